"""The recipe of the shipped ``resnet20-combined``: ``lwt.combine``'s pipeline on the
baseline ResNet-20 (two of stage 1's blocks dropped, 60 % of stages 2-3's inner filters
removed, 20 epochs distilled, 2 of distilled int8 QAT on the 7-bit weight grid), and
its deployed ONNX Runtime int8 file (the manifest's ``deployed`` entry).

``run`` makes it, ``build`` rebuilds its shapes for loading, ``deployed_bytes`` makes
its ``.onnx``. The pipeline itself (``compress``, ``deploy_int8``,
``activation_ranges``, ``compress_and_deploy``) lives in ``lwt.combine``; it is
re-exported here for older code.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from torch import nn

from .. import models, pruning, quantization
from ..combine import (  # noqa: F401 - re-exported: lwt.recipes.combined.compress ...
    CALIBRATION_BATCHES,
    Compressed,
    activation_ranges,
    compress,
    compress_and_deploy,
    deploy_int8,
    weight_bits_of,
)
from . import filters
from ._common import Result, scaled, seeded_loader

DEPLOY_SUFFIX = ".onnx"


@dataclass(frozen=True)
class Config:
    """Settings of the combined pipeline on a shipped dense model."""

    METHOD: ClassVar[str] = "combined"
    base: str  # the dense model: pruned, and the teacher
    amount: float | dict = 0.6  # fraction of inner filters removed (or per block)
    drop: tuple[str, ...] = ()  # residual blocks removed first (depth pruning)
    multiple_of: int = 8
    epochs: int = 15  # distilled fine-tuning after pruning (one-cycle)
    lr: float = 0.05
    weight_decay: float = 5e-4
    T: float = 4.0
    alpha: float = 0.9
    qat_epochs: int = 2  # distilled QAT, cosine-annealed
    qat_lr: float = 0.002
    weight_bits: int = 7  # the deployed grid: exact on every CPU (deploy.quantize_onnx)
    calibration_batches: int = CALIBRATION_BATCHES  # of 128 training images
    seed: int = 0


METHOD = Config.METHOD


def build(config: Config, arch: dict) -> nn.Module:
    """The pruned shapes (``arch["widths"]``, without the blocks in
    ``arch["dropped"]``), prepared for quantization on the weight grid the checkpoint
    was trained on (``arch["weight_bits"]``; 8 in entries older than the field), with
    the activation ranges loaded from the checkpoint."""
    model = filters.build(config, arch)  # reads only base and widths
    pruning.drop_blocks(model, arch.get("dropped", []))
    qmodel = quantization.quantize_model(model, weight_bits=arch.get("weight_bits", 8))
    return quantization.set_mode(qmodel, observe=False, quantize=True)


def _calibration(config: Config, subset: int | None = None) -> Iterable:
    loader = seeded_loader(config.base, config.seed, subset)
    return itertools.islice(iter(loader), config.calibration_batches)


def run(
    config: Config,
    base: nn.Module,
    *,
    epochs_scale: float = 1.0,
    subset: int | None = None,
    quiet: bool = True,
) -> Result:
    """The pipeline on ``base`` (the trained dense model, also the teacher)."""
    loader = seeded_loader(config.base, config.seed, subset)
    epochs = scaled(config.epochs, epochs_scale) if config.epochs else 0
    qat_epochs = scaled(config.qat_epochs, epochs_scale) if config.qat_epochs else 0
    widths: dict[str, int] = {}

    def record(stage: str, m: nn.Module) -> None:
        if stage == "pruned":
            found = filters.blocks(m)
            widths.update({n: b.conv1.out_channels for n, b in found.items()})

    qmodel = compress(
        base,
        loader,
        amount=config.amount,
        multiple_of=config.multiple_of,
        drop=config.drop,
        epochs=epochs,
        lr=config.lr,
        weight_decay=config.weight_decay,
        T=config.T,
        alpha=config.alpha,
        qat_epochs=qat_epochs,
        qat_lr=config.qat_lr,
        weight_bits=config.weight_bits,
        calibration_batches=config.calibration_batches,
        on_stage=record,
        quiet=quiet,
    )
    schedule = [
        {"stage": "drop blocks", "blocks": list(config.drop)},
        {"stage": "prune", "amount": config.amount, "widths": dict(widths)},
        {"stage": "distil", "epochs": epochs, "lr": config.lr, "T": config.T},
        {"stage": "qat", "epochs": qat_epochs, "lr": config.qat_lr,
         "weight_bits": config.weight_bits, "activation_bits": 8},
    ]
    return Result(
        qmodel,
        epochs + qat_epochs,
        arch={"widths": widths, "dropped": list(config.drop),
              "weight_bits": config.weight_bits},  # fmt: skip
        schedule=schedule,
    )


def deployed_bytes(config: Config, model: nn.Module) -> bytes:
    """The deployed ONNX Runtime int8 file of a model this recipe made, calibrated on
    the recipe's seeded calibration batches."""
    shape = models.input_shape_of(config.base)
    with tempfile.TemporaryDirectory() as tmp:
        path = deploy_int8(model, shape, Path(tmp) / "int8.onnx", _calibration(config))
        return path.read_bytes()
