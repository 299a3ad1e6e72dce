"""Train a compact student with knowledge distillation from a shipped teacher.

The student gets the from-scratch recipe of ``scratch`` (SGD-Nesterov, one-cycle, same
epochs and seed), with the loss replaced by ``lwt.distill.kd_loss`` against the
teacher's logits on the same augmented batch; so a ``scratch`` run and a ``distill``
run of the same student and settings differ only in the loss (the shipped MNIST pair
tunes each one's rate on a validation split, so their rates differ).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from .. import distill, models
from ._common import FromScratch, Result, train_fresh


@dataclass(frozen=True)
class Config(FromScratch):
    """Settings of a distillation run (``teacher``: a shipped checkpoint's name)."""

    METHOD: ClassVar[str] = "distill"
    teacher: str
    T: float
    alpha: float


METHOD = Config.METHOD


def build(config: Config, arch: dict) -> nn.Module:
    """A fresh student (the shapes never change)."""
    return models.create_model(config.model)


def run(
    config: Config,
    base: nn.Module,
    *,
    epochs_scale: float = 1.0,
    subset: int | None = None,
    quiet: bool = True,
) -> Result:
    """Distil ``base`` (the trained teacher) into a fresh ``config.model``, seeded
    exactly as its ``scratch`` run (same initial weights, same batches)."""

    def wrap(student: nn.Module) -> tuple[nn.Module, object]:
        kd = distill.Distiller(student, base, T=config.T, alpha=config.alpha)
        return kd, kd.loss  # the optimizer sees only the student's parameters

    return train_fresh(
        config,
        lambda: models.create_model(config.model),
        epochs_scale=epochs_scale,
        subset=subset,
        quiet=quiet,
        wrap=wrap,
    )
