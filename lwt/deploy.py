"""Deployment: run a model on real int8 kernels with ONNX Runtime (or OpenVINO).

Fake quantization only *simulates* int8 in float. To get the smaller file and the
speed, the model is exported to ONNX (``torch.onnx.export``) and quantized with
ONNX Runtime's static quantizer: weights stored as int8 per output channel, biases as
int32, activation ranges calibrated on a few hundred images, written in the QDQ
format (QuantizeLinear/DequantizeLinear pairs around each op), which ONNX Runtime
fuses into integer kernels (QLinearConv, QGemm, ...) when it loads the model.
ONNX Runtime is the field's standard portable int8 CPU runtime; torch's own int8
path (``torch.ao.quantization``) is deprecated.

References: ONNX Runtime, "Quantize ONNX models"
(https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html).
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import logging
import tempfile
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn


def export_onnx(
    model: nn.Module, input_shape: tuple[int, ...], path: str | Path
) -> Path:
    """Export ``model`` (eval mode, CPU) to ONNX with a dynamic batch dimension.

    Args:
        model: the model; fake-quantized models export as Q/DQ nodes.
        input_shape: one example's shape, e.g. ``(3, 32, 32)``.
        path: the ``.onnx`` file to write.
    """
    path = Path(path)
    if any(t.device.type != "cpu" for t in (*model.parameters(), *model.buffers())):
        model = copy.deepcopy(model).cpu()  # export a CPU copy; yours stays put
    was_training = model.training
    example = torch.randn(2, *input_shape)
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model.eval(),
                (example,),
                dynamic_shapes=({0: batch},),
                input_names=["input"],
                output_names=["logits"],
                dynamo=True,
                verbose=False,
            )
            program.save(str(path))
    finally:
        model.train(was_training)  # the caller's mode, even when export fails
    return strip(path)


def strip(path: str | Path) -> Path:
    """Drop what inference does not need from an ONNX file, in place: the
    intermediate shapes (``value_info``, re-inferred at load) and per-node debug
    metadata (the exporter's source locations)."""
    import onnx

    model = onnx.load(str(path))
    del model.graph.value_info[:]
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    onnx.save(model, str(path))
    return Path(path)


def _short(i: int) -> str:
    """``i`` in base 36: 0, 1, ..., z, 10, ... (the shortest printable names)."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        i, r = divmod(i, 36)
        out = digits[r] + out
        if i == 0:
            return out


def shorten_names(path: str | Path) -> Path:
    """Rename every internal tensor of an ONNX file to a short base-36 name and drop
    node names, and drop the graph's metadata (the exporter's record of the torch
    program), in place; the graph's input and output names stay.

    The exporter names tensors after the module path (``layer3.2.conv2.weight_
    quantized_scale``...); a name is stored once per use, so in a small int8 model
    the names can weigh a quarter of the file. Renaming changes nothing a runtime
    computes: the outputs are bit-identical.
    """
    import onnx

    model = onnx.load(str(path))
    g = model.graph
    keep = {v.name for v in (*g.input, *g.output)}
    names: dict[str, str] = {}

    fresh = (f"t{_short(i)}" for i in itertools.count())

    def new(name: str) -> str:
        if not name or name in keep:
            return name
        if name not in names:
            names[name] = next(n for n in fresh if n not in keep)
        return names[name]

    for t in g.initializer:
        t.name = new(t.name)
    for node in g.node:
        node.name = ""
        node.input[:] = [new(n) for n in node.input]
        node.output[:] = [new(n) for n in node.output]
    del g.value_info[:]  # intermediate shapes: keyed by the old names
    del g.metadata_props[:]  # the exporter's record of the torch program
    for v in (*g.input, *g.output):
        del v.metadata_props[:]
    onnx.save(model, str(path))
    return Path(path)


def _inputs(batch: Tensor | tuple | list) -> Tensor:
    """The input tensor of a batch that is either ``x`` or an ``(x, label)`` pair."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


class _OnnxRuntimeLogFilter(logging.Filter):
    """Drops records logged from ONNX Runtime's own files (its quantizer logs with
    the root logger), and nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "onnxruntime" not in Path(record.pathname).parts


class _Reader:
    """ONNX Runtime CalibrationDataReader over batches of images."""

    def __init__(self, name: str, batches: Iterable) -> None:
        self.name, self.batches = name, iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        if batch is None:
            return None
        return {self.name: _inputs(batch).numpy()}


# Weight bits of lwt's int8 files. 7-bit weights (integers in [-63, 63]) cannot
# saturate x86's 16-bit pair sums: without VNNI, int8 kernels multiply uint8
# activations by int8 weights and add adjacent pairs into a saturating int16
# (``vpmaddubsw``): 2 * 255 * 127 = 64,770 > 32,767, but 2 * 255 * 63 = 32,130.
WEIGHT_BITS = (7, 8)


def weight_scales(weight: np.ndarray, axis: int | None, *, bits: int = 7) -> np.ndarray:
    """Symmetric weight scales ``S = max|w| / (2^(b-1) - 1)`` per channel along
    ``axis`` (one scale if None): the narrow signed grid lwt's fake quantizers use
    (``quantization.qparams``), so QAT-trained integers are kept exactly."""
    w = np.abs(np.asarray(weight, np.float32))
    if axis is None:
        m = w.max(keepdims=True).reshape(1)
    else:
        m = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1).max(1)
    qmax = 2 ** (bits - 1) - 1
    return np.maximum(m / qmax, np.finfo(np.float32).eps).astype(np.float32)


def _weight_overrides(fp32: str | Path, bits: int, per_channel: bool) -> dict:
    """``TensorQuantOverrides`` putting every Conv/Gemm/MatMul weight on the narrow
    ``bits``-bit grid (axis as ONNX Runtime's quantizer picks it)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(fp32)).graph
    inits = {t.name: t for t in graph.initializer}
    out: dict[str, list[dict]] = {}
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        name = node.input[1]
        if name not in inits or name in out:
            continue
        w = numpy_helper.to_array(inits[name])
        axis = 0
        if node.op_type == "Gemm":
            trans = next((a.i for a in node.attribute if a.name == "transB"), 0)
            axis = 0 if trans else 1
        elif node.op_type == "MatMul":
            axis = w.ndim - 1
        scales = weight_scales(w, axis if per_channel else None, bits=bits)
        zero = np.array(0, np.int8)
        rows = [{"scale": np.array(s, np.float32), "zero_point": zero} for s in scales]
        if per_channel:
            rows[0]["axis"] = axis
        out[name] = rows
    return out


def _input_name(path: str | Path) -> str:
    """The name of an ONNX graph's first input (``export_onnx`` writes ``input``)."""
    import onnx

    return onnx.load(str(path), load_external_data=False).graph.input[0].name


def quantize_onnx(
    fp32: str | Path,
    path: str | Path,
    batches: Iterable,
    *,
    per_channel: bool = True,
    method: str = "minmax",
    ranges: dict[str, tuple[float, int]] | None = None,
    weight_bits: int = 7,
) -> Path:
    """ONNX Runtime static int8 quantization of an exported float model.

    Weights: int8 storage, symmetric, per channel, on a **7-bit grid** by default
    (integers in [-63, 63], ``S = max|w| / 63``); activations: uint8, asymmetric, per
    tensor, ranges from ``batches`` (calibration data: inputs or (input, label) pairs);
    QDQ format.

    Why 7 bits: an x86 CPU without VNNI (AVX2, AVX-512 before Cascade Lake) runs
    uint8 × int8 through ``vpmaddubsw``, which adds each adjacent pair of products
    into a *saturating* int16: ``|a₀w₀ + a₁w₁| ≤ 2 · 255 · 127 = 64,770`` overflows
    32,767, and the int8 file loses accuracy on such a laptop only (ONNX Runtime's
    quantization guide; microsoft/onnxruntime#5849, #6004). With ``|w| ≤ 63`` the
    bound is 32,130: the same file computes the same integers on every x86 and ARM
    kernel. ``weight_bits=8`` (``[-127, 127]``) is ONNX Runtime's own default, exact
    only on VNNI/AMX and ARM: check such a file with ``lwt.saturation``.

    Args:
        fp32: the float ``.onnx`` file (from ``export_onnx``).
        path: the int8 ``.onnx`` file to write.
        batches: calibration data, a few hundred images in batches.
        per_channel: per-channel weight scales.
        method: calibration: ``"minmax"``, ``"percentile"`` or ``"entropy"``.
        ranges: ``{tensor name: (scale, zero_point)}`` of activations whose uint8 grid
            is already known (e.g. trained by QAT): used as given instead of
            calibrated (ONNX Runtime's ``TensorQuantOverrides``).
        weight_bits: 7 (portable, the default) or 8.
    """
    from onnxruntime import quantization as oq

    methods = {
        "minmax": oq.CalibrationMethod.MinMax,
        "percentile": oq.CalibrationMethod.Percentile,
        "entropy": oq.CalibrationMethod.Entropy,
    }
    if method not in methods:
        raise ValueError(f"method must be one of {sorted(methods)}, got {method!r}")
    if isinstance(weight_bits, bool) or weight_bits not in WEIGHT_BITS:
        raise ValueError(f"weight_bits must be 7 or 8, got {weight_bits!r}")
    overrides = {
        name: [{"scale": np.array(s, np.float32), "zero_point": np.array(z, np.uint8)}]
        for name, (s, z) in (ranges or {}).items()
    }
    if weight_bits == 7:
        overrides.update(_weight_overrides(fp32, weight_bits, per_channel))
    # The quantizer logs a hint to run its pre-processing (shape inference and graph
    # fusion); export_onnx's graph is already optimized (BatchNorm folded). Drop
    # ONNX Runtime's records for the call only; every other logger is left alone.
    root, quiet = logging.getLogger(), _OnnxRuntimeLogFilter()
    root.addFilter(quiet)
    try:
        oq.quantize_static(
            str(fp32),
            str(path),
            _Reader(_input_name(fp32), batches),
            quant_format=oq.QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=oq.QuantType.QUInt8,
            weight_type=oq.QuantType.QInt8,
            calibrate_method=methods[method],
            extra_options={"TensorQuantOverrides": overrides},
        )
    finally:
        root.removeFilter(quiet)
    return strip(path)


def _has_vnni() -> bool | None:
    """Whether Linux's ``/proc/cpuinfo`` lists VNNI (None elsewhere: unknown).
    ``lwt.cpu`` reports every feature; this file stays copyable alone."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, flags = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return bool({"avx512_vnni", "avx_vnni"} & set(flags.split()))
    return None


def _options(threads: int, precise: bool | None):  # noqa: ANN202
    import onnxruntime as ort

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if precise is None:  # on unless the CPU is known to have VNNI
        precise = _has_vnni() is not True
    if precise:  # microsoft/onnxruntime#12088
        opts.add_session_config_entry("session.x64quantprecision", "1")
    return opts


def session(path: str | Path, *, threads: int = 1, precise: bool | None = None):  # noqa: ANN201
    """An ONNX Runtime CPU session with all graph optimizations (QDQ fusion) on.

    ``precise`` sets ONNX Runtime's ``session.x64quantprecision``: an int8 layer whose
    weights leave [-64, 63] then runs in the slower uint8 × uint8 kernel instead of
    the uint8 × int8 one that saturates on x86 CPUs without VNNI (see
    :func:`quantize_onnx`). In ONNX Runtime 1.32 this applies on VNNI/AMX CPUs too,
    where it only costs time; so ``None`` (the default) sets it unless the CPU has
    VNNI (``/proc/cpuinfo``; unknown features: set). lwt's own 7-bit
    files are never affected. ``precise=False`` runs a file as a program with ONNX
    Runtime's default options would.
    """
    import onnxruntime as ort

    opts = _options(threads, precise)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class OrtModel(nn.Module):
    """An ONNX Runtime session behind the ``nn.Module`` interface (``x -> logits``),
    so ``lwt.train.evaluate`` and ``lwt.measure.Ledger`` can run it like a model.

    Args:
        path: the ``.onnx`` file.
        threads: ONNX Runtime intra-op threads.
        precise: ``session.x64quantprecision`` (see :func:`session`; None: on unless
            the CPU has VNNI).
    """

    def __init__(
        self, path: str | Path, *, threads: int = 1, precise: bool | None = None
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.session = session(path, threads=threads, precise=precise)
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: Tensor) -> Tensor:
        out = self.session.run(None, {self.input_name: x.detach().cpu().numpy()})
        return torch.from_numpy(out[0])

    def extra_repr(self) -> str:
        return f"path={self.path.name}"


PRECISIONS = ("f32", "bf16", "f16")


class OvModel(nn.Module):
    """An OpenVINO compiled model behind the ``nn.Module`` interface (``x -> logits``).

    OpenVINO (Intel's inference runtime) reads the same ``.onnx`` files as ONNX
    Runtime, fp32 or int8 (QDQ). On a CPU with bf16 arithmetic (AMX, AVX-512 BF16) it
    runs a float32 model in **bf16 by default**: pass ``precision="f32"`` to keep
    float32. :meth:`runtime_precisions` reports what the compiled graph really runs.

    Args:
        path: the ``.onnx`` file.
        precision: ``INFERENCE_PRECISION_HINT``: ``"f32"``, ``"bf16"``, ``"f16"``, or
            None for the runtime's default on this CPU.
        threads: ``INFERENCE_NUM_THREADS`` (one inference stream).
    """

    def __init__(
        self, path: str | Path, *, precision: str | None = None, threads: int = 1
    ) -> None:
        super().__init__()
        if precision is not None and precision not in PRECISIONS:
            raise ValueError(f"precision must be None or one of {PRECISIONS}, got "
                             f"{precision!r}")  # fmt: skip
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        import openvino as ov

        config: dict[str, object] = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1}
        if precision is not None:
            config["INFERENCE_PRECISION_HINT"] = precision
        self.path = Path(path)
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()

    @property
    def precision(self) -> str:
        """The inference precision the runtime chose (e.g. ``"bf16"``, ``"f32"``)."""
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        return hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)

    def runtime_precisions(self) -> dict[str, int]:
        """How many operations of the compiled graph run in each precision
        (``runtimePrecision``; e.g. ``{"bf16": 8, "f32": 16, "u8": 4}``)."""
        counts: dict[str, int] = {}
        for op in self.compiled.get_runtime_model().get_ops():
            p = op.get_rt_info()["runtimePrecision"].astype(str)
            counts[p] = counts.get(p, 0) + 1
        return dict(sorted(counts.items()))

    def forward(self, x: Tensor) -> Tensor:
        out = self.request.infer({0: x.detach().cpu().numpy()})
        return torch.from_numpy(out[self.compiled.output(0)].copy())

    def extra_repr(self) -> str:
        return f"path={self.path.name}, precision={self.precision}"


def op_counts(path: str | Path, *, optimized: bool = False) -> dict[str, int]:
    """How many nodes of each op type the model has: as stored, or (``optimized``)
    after ONNX Runtime's graph optimizations, which shows the int8 kernels used."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:  # nothing written beside the model
        if optimized:
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.log_severity_level = 3  # (warns: the saved graph is machine-specific)
            opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
            ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            path = opts.optimized_model_filepath
        counts: dict[str, int] = {}
        for node in onnx.load(str(path)).graph.node:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def profile_onnx(
    path: str | Path, x: Tensor, *, runs: int = 5, threads: int = 1
) -> list[dict]:
    """Where ONNX Runtime spends its time: one row per node of the optimized graph,
    ``{"node", "op", "inputs", "output", "ms", "order"}`` (shapes as lists; ``ms`` the
    mean kernel time over ``runs`` runs on ``x``, after one untimed run; ``order``
    the node's place in the execution, from 0), slowest first.

    Uses ONNX Runtime's own profiler (``SessionOptions.enable_profiling``). Shapes are
    those of the optimized graph (channels-last for the int8 convolutions).
    """
    import json

    import onnxruntime as ort

    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    opts = _options(threads, precise=None)
    opts.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:  # the trace file goes here
        opts.profile_file_prefix = str(Path(tmp) / "ort")
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: x.detach().cpu().numpy()}
        for _ in range(runs + 1):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    rows: dict[str, dict] = {}
    times: dict[str, list[float]] = {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        name = e["name"][: -len("_kernel_time")]
        shapes = [next(iter(d.values())) for d in e["args"].get("input_type_shape", [])]
        out = [next(iter(d.values())) for d in e["args"].get("output_type_shape", [])]
        row = {"node": name, "op": e["args"]["op_name"], "inputs": shapes}
        rows.setdefault(name, {**row, "output": out[0] if out else [],
                               "order": len(rows)})  # fmt: skip
        times.setdefault(name, []).append(e["dur"] / 1e3)
    for name, row in rows.items():
        timed = times[name][1:] or times[name]  # the first run is the untimed one
        row["ms"] = sum(timed) / len(timed)
    return sorted(rows.values(), key=lambda r: -r["ms"])


def tensor_values(
    path: str | Path, x: Tensor, names: Iterable[str] | None = None
) -> dict[str, np.ndarray]:
    """The values of the graph's input and of its intermediate tensors ``names`` (None:
    every node output, in graph order) on input ``x``, run by ONNX Runtime with graph
    optimizations off (so every tensor of the file exists as stored)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    graph = model.graph
    if names is None:
        names = [out for node in graph.node for out in node.output if out]
    names = list(dict.fromkeys(names))
    known = {o.name for o in graph.output}
    graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in known)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads, opts.log_severity_level = 1, 3
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])  # fmt: skip
    feed = {graph.input[0].name: x.detach().cpu().numpy()}
    outs = sess.run(None, feed)
    values = dict(zip([o.name for o in sess.get_outputs()], outs, strict=True))
    first = graph.input[0].name
    return {first: feed[first], **{n: values[n] for n in names}}  # in graph order


@torch.no_grad()
def top1_agreement(
    f: Callable[[Tensor], Tensor], g: Callable[[Tensor], Tensor], batches: Iterable
) -> float:
    """Fraction of images on which ``f`` and ``g`` predict the same class."""
    same = total = 0
    for batch in batches:
        x = _inputs(batch)
        same += int((f(x).argmax(1) == g(x).argmax(1)).sum())
        total += len(x)
    if not total:
        raise ValueError("batches is empty")
    return same / total
