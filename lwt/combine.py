"""Combining techniques (組み合わせ): structured pruning → distillation → int8 QAT →
an ONNX Runtime int8 file, on any model and data.

The order is the one that works (notebook 07 measures the alternatives):

1. **prune**: drop whole residual blocks (``pruning.drop_blocks``; Veit et al. 2016),
   where an int8 kernel's per-pixel cost makes depth, not width, the latency; then
   whole filters (Li et al. 2017), so the dense kernels get smaller: every ResNet
   block's inner channels, or any ``prune(model)`` you pass;
2. **fine-tune with distillation** from the dense model as the teacher (Hinton et al.
   2015): ``L = α T² KL(p_t^T ‖ p_s^T) + (1 − α) CE(y, p_s)``, one-cycle SGD;
3. **int8 quantization-aware training** (Jacob et al. 2018): BatchNorm folded, ranges
   calibrated, a short fine-tune through the fake quantizers, still distilled;
4. **deploy**: the float model the QAT model simulates (``quantization.to_float``) is
   exported to ONNX and written as an ONNX Runtime int8 file (QDQ, weights per
   channel on the 7-bit grid QAT trained, stored as int8, so that no x86 int8
   kernel saturates; int32 biases) with short tensor names.

:func:`compress` runs 1-3; :func:`deploy_int8` runs 4; :func:`compress_and_deploy`
does both and measures a ledger. This is the composition layer: it uses the
techniques and the core (training comes from ``lwt.train``), and the recipe that makes
the shipped ``resnet20-combined`` (``lwt.recipes.combined``) uses it.

References: Li et al. Pruning Filters for Efficient ConvNets. ICLR 2017. Veit,
Wilber, Belongie. Residual Networks Behave Like Ensembles of Relatively Shallow
Networks. NeurIPS 2016. Hinton, Vinyals, Dean. Distilling the Knowledge in a Neural
Network. 2015. Jacob et al. Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference. CVPR 2018.
"""

from __future__ import annotations

import copy
import itertools
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from . import deploy, distill, measure, pruning, quantization, train

CALIBRATION_BATCHES = 4


@dataclass
class Compressed:
    """What :func:`compress_and_deploy` made: the QAT model (torch, fake-quantized),
    the deployed int8 ``.onnx`` file, and the ledger measured on the test set."""

    model: nn.Module
    onnx: Path
    ledger: measure.Ledger
    stages: list[str] = field(default_factory=list)


def compress(
    model: nn.Module,
    train_loader: Iterable,
    *,
    amount: float | dict[str, float] = 0.5,
    multiple_of: int = 8,
    drop: Sequence[str] = (),
    prune: Callable[[nn.Module], nn.Module] | None = None,
    epochs: int = 1,
    lr: float = 0.05,
    weight_decay: float = 5e-4,
    teacher: nn.Module | None = None,
    T: float = 4.0,
    alpha: float = 0.9,
    qat_epochs: int = 1,
    qat_lr: float = 0.002,
    weight_bits: int = 7,
    calibration_batches: int = CALIBRATION_BATCHES,
    on_stage: Callable[[str, nn.Module], object] | None = None,
    quiet: bool = True,
) -> nn.Module:
    """Prune, distil and quantize a trained model (stages 1-3 of the module docstring).

    Args:
        model: a trained float model; not changed.
        train_loader: training batches ``(x, y)`` (augmented as for training), with
            ``len()``.
        amount: fraction of every ResNet block's inner filters to remove
            (``pruning.prune_resnet_blocks``), one number or ``{block: fraction}``.
        multiple_of: round kept widths to a multiple of this (vector width).
        drop: residual blocks to remove first (``pruning.drop_blocks``), e.g.
            ``("layer1.1", "layer1.2")``.
        prune: your own structured pruning, ``prune(model) -> model`` (e.g. with
            Torch-Pruning for other architectures); ``amount`` and ``multiple_of``
            are then unused.
        epochs: distilled fine-tuning epochs after pruning (0 skips it).
        lr, weight_decay: its one-cycle SGD settings.
        teacher: the teacher; default a copy of ``model`` before pruning.
        T, alpha: distillation temperature and weight of the soft term.
        qat_epochs: distilled int8 QAT epochs (0: post-training quantization only).
        qat_lr: QAT rate, cosine-annealed.
        weight_bits: the weights' grid, trained by QAT and kept by
            :func:`deploy_int8`: 7 (portable: no x86 int8 kernel can saturate,
            ``deploy.quantize_onnx``) or 8 (exact on VNNI/AMX and ARM only).
        calibration_batches: training batches that calibrate the activation ranges.
        on_stage: called as ``on_stage(stage, model)`` after ``"pruned"``,
            ``"distilled"`` and ``"quantized"`` (e.g. to add a ledger row).
        quiet: hide progress.

    Returns:
        The fake-quantized int8 model (a ``torch.fx.GraphModule``, eval mode); deploy
        it with :func:`deploy_int8`.
    """
    if epochs < 0 or qat_epochs < 0:
        raise ValueError(
            f"epochs and qat_epochs must be >= 0, got {epochs}, {qat_epochs}"
        )
    if calibration_batches < 1:
        raise ValueError(f"calibration_batches must be >= 1, got {calibration_batches}")
    if isinstance(weight_bits, bool) or weight_bits not in deploy.WEIGHT_BITS:
        raise ValueError(f"weight_bits must be 7 or 8, got {weight_bits!r}")
    if lr <= 0 or qat_lr <= 0:
        raise ValueError(f"lr and qat_lr must be > 0, got {lr}, {qat_lr}")
    if len(train_loader) == 0:
        raise ValueError("train_loader yields no batches")
    bad = set(drop) - set(pruning.removable_blocks(model))
    if isinstance(drop, str) or bad:
        raise ValueError(
            f"drop must list blocks of {pruning.removable_blocks(model)}, got {drop!r}"
        )
    teacher = copy.deepcopy(teacher if teacher is not None else model).eval()
    student = pruning.drop_blocks(copy.deepcopy(model), drop)
    if prune is not None:
        student = prune(student)
    else:
        pruning.prune_resnet_blocks(student, amount, multiple_of=multiple_of)
    if on_stage:
        on_stage("pruned", student)
    if epochs:
        kd = distill.Distiller(student, teacher, T=T, alpha=alpha)
        train.onecycle(kd, train_loader, epochs, lr=lr, weight_decay=weight_decay,
                       loss_fn=kd.loss, quiet=quiet)  # fmt: skip
        student.cpu().eval()
    if on_stage:
        on_stage("distilled", student)
    qmodel = quantization.quantize_model(student, weight_bits=weight_bits)
    calibration = itertools.islice(iter(train_loader), calibration_batches)
    quantization.calibrate(qmodel, calibration)
    if qat_epochs:
        kd = distill.Distiller(qmodel, teacher, T=T, alpha=alpha)

        def retrain(m: nn.Module) -> None:  # m is kd's student: train through kd
            train.finetune(kd, train_loader, epochs=qat_epochs, lr=qat_lr,
                           loss_fn=kd.loss, quiet=quiet)  # fmt: skip

        quantization.qat(qmodel, retrain=retrain)
        qmodel.cpu()
    qmodel.eval()
    if on_stage:
        on_stage("quantized", qmodel)
    return qmodel


def deploy_int8(
    qmodel: nn.Module,
    input_shape: tuple[int, ...],
    path: str | Path,
    batches: Iterable,
) -> Path:
    """Write the ONNX Runtime int8 file of a model from :func:`compress` (stage 4).

    ``quantization.to_float`` bakes the QAT weights onto their grid, the float
    graph is exported (``deploy.export_onnx``) and quantized by ONNX Runtime: the same
    symmetric per-channel weight grid of the same bits (7 or 8, read from the
    model's weight quantizers), so the trained integers are kept, and the
    activation grids the QAT model trained with (:func:`activation_ranges`); a tensor
    without one is calibrated on ``batches``. Then the tensor names are shortened.
    """
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = deploy.export_onnx(
            quantization.to_float(qmodel), input_shape, Path(tmp) / "fp32.onnx"
        )
        ranges = activation_ranges(qmodel, fp32)
        deploy.quantize_onnx(fp32, path, batches, ranges=ranges,
                             weight_bits=weight_bits_of(qmodel))  # fmt: skip
    return deploy.shorten_names(path)


def weight_bits_of(qmodel: nn.Module) -> int:
    """The bit width of a fake-quantized model's weight grids (one for all)."""
    bits = {m.bits for m in qmodel.modules()
            if isinstance(m, quantization.FakeQuant) and m.dynamic}  # fmt: skip
    if len(bits) != 1 or not bits <= set(deploy.WEIGHT_BITS):
        raise ValueError(f"weights must all be on a 7- or 8-bit grid, found {bits}")
    return bits.pop()


def activation_ranges(qmodel: nn.Module, fp32: str | Path) -> dict[str, tuple]:
    """``{ONNX tensor: (scale, zero_point)}``: each activation quantizer of a model
    from :func:`compress` (or ``quantization.quantize_model``), matched to the tensor
    of the exported float graph that it quantizes.

    The graph ``fp32`` is the float model the QAT model simulates
    (``quantization.to_float``), so on any input each quantizer's input holds the same
    numbers as one tensor of the graph. Both are run on one random probe batch — the
    model with a hook on every quantizer, the graph in ONNX Runtime with every
    intermediate tensor exposed and graph optimizations off — and each quantizer is
    matched by shape and values (to float tolerance); among equal tensors, the last
    in graph order (a ``Relu`` after the ``Add`` whose outputs it kept). Matching by
    what is computed, not by order or op types, works for any architecture.

    Raises:
        ValueError: a quantizer that matches no tensor of the graph (not its export).
    """
    import numpy as np
    import onnx
    import torch

    graph = onnx.load(str(fp32), load_external_data=False).graph
    dims = [d.dim_value or 2 for d in graph.input[0].type.tensor_type.shape.dim]
    x = torch.randn(*dims, generator=torch.Generator().manual_seed(0))
    values = deploy.tensor_values(fp32, x)  # the input, then every tensor in order
    names = list(values)
    seen: list[torch.Tensor] = []
    quantizers = quantization.activation_quantizers(qmodel)
    float_model = quantization.to_float(qmodel)
    hooks = [q.register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
             for q in quantization.activation_quantizers(float_model)]  # fmt: skip
    try:
        with torch.no_grad():
            float_model(x)
    finally:
        for h in hooks:
            h.remove()
    if len(seen) != len(quantizers):
        raise ValueError(f"{len(quantizers)} quantizers, {len(seen)} seen in a "
                         "forward: one runs more than once or not at all")  # fmt: skip
    ranges: dict[str, tuple] = {}
    for k, (q, t) in enumerate(zip(quantizers, seen, strict=True)):
        ref = t.numpy()
        tol = 1e-4 * max(1.0, float(np.abs(ref).max()))
        hits = [n for n in names if values[n].shape == ref.shape
                and np.allclose(values[n], ref, rtol=1e-3, atol=tol)]  # fmt: skip
        if not hits:
            raise ValueError(f"activation quantizer {k} (of {len(quantizers)}) matches "
                             f"no tensor of {Path(fp32).name}")  # fmt: skip
        if hits[-1] in ranges:
            raise ValueError(f"activation quantizer {k} matches tensor {hits[-1]!r}, "
                             "already matched by another")  # fmt: skip
        ranges[hits[-1]] = (float(q.scale.reshape(-1)[0]),
                            int(q.zero_point.reshape(-1)[0]))  # fmt: skip
    return ranges


def compress_and_deploy(
    model: nn.Module,
    train_loader: Iterable,
    test_loader: Iterable,
    input_shape: tuple[int, ...],
    path: str | Path,
    *,
    repeats: int = 30,
    warmup: int = 5,
    **settings: object,
) -> Compressed:
    """The whole pipeline in one call: :func:`compress` (``settings`` are its keyword
    arguments), :func:`deploy_int8` to ``path``, and a ledger of the dense model, the
    QAT model (torch) and the deployed file (ONNX Runtime, its real bytes) on
    ``test_loader``: accuracy, parameters, MACs, bytes and latency (``repeats`` timed
    runs after ``warmup`` untimed ones)."""
    ledger = measure.Ledger(
        input_shape, repeats=repeats, warmup=warmup, baseline="dense fp32 (torch)"
    )
    ledger.measure("dense fp32 (torch)", model, test_loader)
    stages: list[str] = []
    user_hook = settings.pop("on_stage", None)

    def on_stage(stage: str, m: nn.Module) -> None:
        stages.append(stage)
        if user_hook:
            user_hook(stage, m)

    qmodel = compress(model, train_loader, on_stage=on_stage, **settings)
    n = int(settings.get("calibration_batches", CALIBRATION_BATCHES))
    calibration = itertools.islice(iter(train_loader), n)
    onnx = deploy_int8(qmodel, input_shape, path, calibration)
    ledger.measure("QAT int8 (torch, fake-quant)", qmodel, test_loader)
    ledger.measure(
        "deployed int8 (ONNX Runtime)",
        qmodel,
        test_loader,
        payload=onnx.read_bytes(),
        forward=deploy.OrtModel(onnx),
    )
    return Compressed(qmodel, onnx, ledger, stages)


__all__ = ["CALIBRATION_BATCHES", "Compressed", "activation_ranges", "compress",
           "compress_and_deploy", "deploy_int8", "weight_bits_of"]  # fmt: skip
