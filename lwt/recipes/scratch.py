"""Train a model from scratch: SGD-Nesterov with a one-cycle schedule, cross-entropy.

The course's baselines (notebook 00) are made this way; so are students trained
without a teacher in later lessons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from .. import models
from ._common import Result, train_fresh


@dataclass(frozen=True)
class Config:
    """Settings of a from-scratch training run."""

    METHOD: ClassVar[str] = "scratch"
    model: str
    epochs: int
    lr: float
    weight_decay: float
    batch_size: int = 128
    shift: int | None = None  # random translations (pixels) instead of the default
    label_smoothing: float = 0.0
    seed: int = 0


METHOD = Config.METHOD


def build(config: Config, arch: dict) -> nn.Module:
    """A fresh ``lwt.models`` model (the shapes never change)."""
    return models.create_model(config.model)


def run(
    config: Config,
    base: None,
    *,
    epochs_scale: float = 1.0,
    subset: int | None = None,
    quiet: bool = True,
) -> Result:
    """Train ``config.model`` from a seeded random initialisation."""
    loss = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    return train_fresh(
        config,
        lambda: models.create_model(config.model),
        epochs_scale=epochs_scale,
        subset=subset,
        quiet=quiet,
        wrap=lambda model: (model, loss),
    )
