"""Train a model from scratch: SGD-Nesterov with a one-cycle schedule, cross-entropy.

The course's baselines (notebook 00) are made this way; so are students trained
without a teacher in later lessons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from .. import models, train
from ._common import Result, scaled, seeded_loader


@dataclass(frozen=True)
class Config:
    """Settings of a from-scratch training run."""

    METHOD: ClassVar[str] = "scratch"
    model: str
    epochs: int
    lr: float
    weight_decay: float
    batch_size: int = 128
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
    loader = seeded_loader(config.model, config.seed, subset, config.batch_size)
    model = models.create_model(config.model)  # initialised after the seed is set
    epochs = scaled(config.epochs, epochs_scale)
    opt, sched = train.sgd_onecycle(
        model, epochs * len(loader), config.lr, config.weight_decay
    )
    loss = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    history = train.train(model, loader, epochs, opt, sched, loss, quiet=quiet)
    return Result(model.cpu(), len(history))
