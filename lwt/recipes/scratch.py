"""Train a model from scratch: SGD-Nesterov with a one-cycle schedule, cross-entropy.

The course's baselines (notebook 00) are made this way; so are students trained
without a teacher in later lessons.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import ClassVar

from torch import nn

from .. import models
from ._common import FromScratch, Result, train_fresh


@dataclass(frozen=True)
class Config(FromScratch):
    """Settings of a from-scratch training run."""

    METHOD: ClassVar[str] = "scratch"
    _: KW_ONLY
    label_smoothing: float = 0.0


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
