"""Quantization-aware training: post-training quantization (BatchNorm folded, ranges
calibrated on 512 training images), then QAT with the straight-through estimator and
a cosine-annealed rate.

Reference: Jacob et al. Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference. CVPR 2018.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from .. import models, quantization, train
from ._common import Result, scaled, seeded_loader


@dataclass(frozen=True)
class Config:
    """Settings of a QAT run."""

    METHOD: ClassVar[str] = "qat"
    base: str
    weight_bits: int = 8
    act_bits: int = 8
    weight_observer: str = "minmax"  # see lwt.quantization.OBSERVERS
    epochs: int = 3
    lr: float = 0.005
    weight_decay: float = 0.0
    calibration_batches: int = 4  # of 128 training images
    seed: int = 0


METHOD = Config.METHOD


def _prepare(model: nn.Module, config: Config) -> nn.Module:
    return quantization.quantize_model(
        model,
        weight_bits=config.weight_bits,
        act_bits=config.act_bits,
        weight_observer=config.weight_observer,
    )


def build(config: Config, arch: dict) -> nn.Module:
    """The baseline prepared for quantization (BatchNorm folded, quantizers in place),
    with the activation ranges loaded from the checkpoint."""
    model = _prepare(models.create_model(config.base), config)
    return quantization.set_mode(model, observe=False, quantize=True)


def run(
    config: Config,
    base: nn.Module,
    *,
    epochs_scale: float = 1.0,
    subset: int | None = None,
    quiet: bool = True,
) -> Result:
    """PTQ of ``base``, then QAT."""
    loader = seeded_loader(config.base, config.seed, subset)
    epochs = scaled(config.epochs, epochs_scale)
    model = _prepare(base, config)
    quantization.calibrate(
        model, itertools.islice(iter(loader), config.calibration_batches)
    )
    quantization.qat(
        model,
        retrain=lambda m: train.finetune(
            m,
            loader,
            epochs=epochs,
            lr=config.lr,
            weight_decay=config.weight_decay,
            quiet=quiet,
        ),
    )
    return Result(model, epochs)
