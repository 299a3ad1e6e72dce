"""Will an int8 file compute the same on every CPU? Count the 16-bit pair sums that
saturate on x86 CPUs without VNNI.

An x86 CPU without VNNI (AVX2; AVX-512 before Cascade Lake) multiplies uint8
activations ``a`` by int8 weights ``w`` with ``vpmaddubsw``, which adds each
adjacent pair of products along the reduction axis into a **saturating int16**::

    p_i = a_{2i} w_{2i} + a_{2i+1} w_{2i+1},   stored as clamp(p_i, -32768, 32767)

``|p_i| ≤ 2 · 255 · 127 = 64,770``, so 8-bit weights can overflow and the layer
silently computes another number; with VNNI or AMX (``vpdpbusd``: int32 sums) and
on ARM (``sdot``/``udot``, or 16-bit widening) nothing saturates. With weights in
[-63, 63] the bound is ``2 · 255 · 63 = 32,130 < 32,767``: no pair can saturate.

:func:`saturation_report` computes every pair sum of every integer Conv/Gemm/MatMul
of a QDQ file (the ones ONNX Runtime fuses into QLinearConv, QGemm, ...), on real
data, from the file's own scales, zero points and integer weights, so a machine
with VNNI can tell whether the file would lose accuracy on an AVX2 laptop.

Pairs follow the order ONNX Runtime's x86 kernels reduce in: convolutions
channels-last, ``(kh, kw, c)`` with ``c`` innermost; matrix products along ``K``.
Activations stored as int8 are counted as the kernels see them, shifted to uint8
(``a + 128``). Depthwise convolutions run a kernel that widens to 16 bits first, so
their rows are an upper bound. Uint8 weights (uint8 × uint8 kernels widen to 16
bits) are not reported.

References: ONNX Runtime, "Quantize ONNX models" (the AVX2/AVX-512 saturation note
and its cures: 7-bit weights, ``reduce_range``, or uint8 weights);
microsoft/onnxruntime#5849 and #6004 (wrong int8 results on CPUs without VNNI);
microsoft/onnxruntime#12088 (``session.x64quantprecision``); Intel oneDNN,
"Nuances of int8 computations".
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

PAIR_LIMIT = 32_767  # the largest int16; a pair sum below -32,768 saturates too


def _producers(graph) -> dict:  # noqa: ANN001
    return {out: node for node in graph.node for out in node.output}


def _attr(node, name: str, default):  # noqa: ANN001, ANN202
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _integer_layers(model) -> list[dict]:  # noqa: ANN001
    """Conv/Gemm/MatMul nodes fed by DequantizeLinear on both inputs, with their
    activation codes' tensor and zero point and their int8 weights."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    made = _producers(graph)
    layers = []
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        act, wdq = made.get(node.input[0]), made.get(node.input[1])
        dq = [getattr(n, "op_type", None) == "DequantizeLinear" for n in (act, wdq)]
        if not all(dq) or wdq.input[0] not in inits:
            continue
        w = numpy_helper.to_array(inits[wdq.input[0]])
        if w.dtype != np.int8:
            continue  # uint8 weights: a widening kernel, nothing to saturate
        zp = 0
        if len(act.input) > 2 and act.input[2]:
            if act.input[2] not in inits:
                raise ValueError(f"{node.name}: the activation zero point is not an "
                                 "initializer (unsupported)")  # fmt: skip
            zp = int(numpy_helper.to_array(inits[act.input[2]]).reshape(-1)[0])
        _supported(node, w)
        layers.append({"node": node, "codes": act.input[0], "zero_point": zp, "w": w})
    return layers


def _supported(node, w: np.ndarray) -> None:  # noqa: ANN001
    """Refuse the layer forms whose reduction this report does not model."""
    why = None
    if node.op_type == "Conv" and w.ndim != 4:
        why = f"a {w.ndim - 2}-D convolution (only 2-D)"
    elif node.op_type == "Conv" and _attr(node, "auto_pad", b"NOTSET") not in (
        b"NOTSET", "NOTSET"
    ):
        why = "auto_pad (only explicit pads)"
    elif node.op_type == "Gemm" and _attr(node, "transA", 0):
        why = "Gemm with transA"
    elif node.op_type == "MatMul" and w.ndim != 2:
        why = f"a MatMul weight of rank {w.ndim} (only 2)"
    if why:
        raise ValueError(f"{node.name or node.op_type}: {why} is not supported")


def _pairs_stats(a: Tensor, w: Tensor) -> tuple[int, int, int]:
    """``a``: [N, K, L] activation codes (as uint8 values), ``w``: [O, K] weights.
    Max |pair sum|, saturating pairs and all pairs (over N, O, pairs, L)."""
    if a.shape[1] % 2:
        a, w = F.pad(a, (0, 0, 0, 1)), F.pad(w, (0, 1))
    ae, ao = a[:, 0::2], a[:, 1::2]  # [N, P, L]
    we, wo = w[:, 0::2], w[:, 1::2]  # [O, P]
    top = count = 0
    for i in range(len(a)):  # one image at a time bounds the memory: O * P * L
        p = ae[i][None] * we[:, :, None] + ao[i][None] * wo[:, :, None]
        top = max(top, int(p.abs().max()))
        count += int(((p > PAIR_LIMIT) | (p < -PAIR_LIMIT - 1)).sum())
    return top, count, len(a) * w.shape[0] * we.shape[1] * a.shape[2]


def _conv_columns(codes: Tensor, node, zp: int, w: np.ndarray):  # noqa: ANN001, ANN202
    """Per group: activation columns [N, K, L] in (kh, kw, c) order, weights [O, K]."""
    kh, kw = w.shape[2:]
    pads = list(_attr(node, "pads", [0, 0, 0, 0]))
    stride = tuple(_attr(node, "strides", [1, 1]))
    dilation = tuple(_attr(node, "dilations", [1, 1]))
    groups = int(_attr(node, "group", 1))
    # ONNX pads [top, left, bottom, right]; padding is the real 0, i.e. code zp
    x = F.pad(codes, (pads[1], pads[3], pads[0], pads[2]), value=float(zp))
    cols = F.unfold(x, (kh, kw), dilation=dilation, stride=stride)  # [N, C*kh*kw, L]
    n, c = x.shape[:2]
    cg, og = c // groups, w.shape[0] // groups
    cols = cols.reshape(n, groups, cg, kh * kw, -1).transpose(2, 3)
    wt = torch.from_numpy(w.astype(np.float32)).reshape(groups, og, cg, kh * kw)
    wt = wt.transpose(2, 3).reshape(groups, og, -1)
    return [(cols[:, g].reshape(n, kh * kw * cg, -1), wt[g]) for g in range(groups)]


def saturation_report(
    path: str | Path, batches: Iterable, *, max_images: int | None = None
) -> list[dict]:
    """Every pair sum an x86 CPU without VNNI would form in ``path``'s integer layers.

    Args:
        path: an int8 QDQ ``.onnx`` file (e.g. from ``deploy.quantize_onnx``).
        batches: inputs or ``(input, label)`` batches to run through the file.
        max_images: stop after this many images (None: all of ``batches``).

    Returns:
        One row per integer layer, in graph order: ``{"layer", "op", "weights"
        (min, max integer), "max_pair" (largest |a₂ᵢw₂ᵢ + a₂ᵢ₊₁w₂ᵢ₊₁|), "saturating"
        (pairs beyond the int16 range), "pairs" (all pairs computed)}``.
    """
    import onnx
    import onnxruntime as ort

    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be >= 1 or None, got {max_images}")
    model = onnx.load(str(path))
    layers = _integer_layers(model)
    if not layers:
        raise ValueError(f"{path}: no integer Conv/Gemm/MatMul with int8 weights")
    # Expose the activation codes and run the file as stored (this file stays
    # copyable alone, so it does not use lwt.deploy.tensor_values).
    known = {o.name for o in model.graph.output}
    codes = dict.fromkeys(lay["codes"] for lay in layers)
    new = [n for n in codes if n not in known]
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in new)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads, opts.log_severity_level = 1, 3
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])  # fmt: skip
    names = [o.name for o in sess.get_outputs()]
    rows = [
        {"layer": lay["node"].name or f"{lay['node'].op_type}{i}",
         "op": lay["node"].op_type,
         "weights": (int(lay["w"].min()), int(lay["w"].max())),
         "max_pair": 0, "saturating": 0, "pairs": 0}
        for i, lay in enumerate(layers)
    ]  # fmt: skip
    seen = 0
    for batch in batches:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if max_images is not None:
            x = x[: max_images - seen]
        feed = {sess.get_inputs()[0].name: x.numpy()}
        out = dict(zip(names, sess.run(None, feed), strict=True))
        for lay, row in zip(layers, rows, strict=True):
            codes = out[lay["codes"]]
            shift = 128 if codes.dtype == np.int8 else 0  # int8 codes run as uint8
            a = torch.from_numpy(codes.astype(np.float32) + shift)
            node, zp = lay["node"], lay["zero_point"] + shift
            if node.op_type == "Conv":
                parts = _conv_columns(a, node, zp, lay["w"])
            else:
                w = torch.from_numpy(lay["w"].astype(np.float32))
                if node.op_type == "MatMul" or not _attr(node, "transB", 0):
                    w = w.T
                parts = [(a.reshape(-1, a.shape[-1])[:, :, None], w)]
            for cols, w in parts:
                top, count, total = _pairs_stats(cols, w)
                row["max_pair"] = max(row["max_pair"], top)
                row["saturating"] += count
                row["pairs"] += total
        seen += len(x)
        if max_images is not None and seen >= max_images:
            break
    if not seen:
        raise ValueError("batches is empty")
    return rows


__all__ = ["PAIR_LIMIT", "saturation_report"]
