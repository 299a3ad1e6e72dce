"""Attention-head pruning of a shipped transformer, then fine-tuning (Michel et al.
2019): head importances from calibration batches, the globally least important
fraction ``amount`` of all heads removed for real (at least one kept per layer), and
a short AdamW fine-tune of the smaller model — with ``alpha > 0`` distilled from the
unpruned base (as Muralidharan et al. 2024, "Compact Language Models via Pruning and
Knowledge Distillation", retrain pruned LLMs: distillation from the model before
pruning).

The kept heads per layer are recorded in the manifest (``arch``) so that loading
rebuilds the smaller shapes without ranking anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from .. import models, pruning
from ._common import (
    Result,
    TransformerFinetune,
    adamw_finetune,
    calibration_batches,
    teacher_for,
)


@dataclass(frozen=True)
class Config(TransformerFinetune):
    """Settings of head pruning + fine-tuning of a shipped transformer."""

    METHOD: ClassVar[str] = "heads"
    amount: float = 0.5  # fraction of all heads removed


METHOD = Config.METHOD


def build(config: Config, arch: dict) -> nn.Module:
    """The base's architecture with only ``arch["keep"]``'s heads."""
    model = models.create_model(config.model)
    keep = arch.get("keep")
    return pruning.prune_heads(model, keep) if keep else model


def run(
    config: Config,
    base: nn.Module,
    *,
    epochs_scale: float = 1.0,
    subset: int | None = None,
    quiet: bool = True,
) -> Result:
    """Score the heads, remove the least important, fine-tune."""
    batches = calibration_batches(config.model, config.calibration, config.seed)
    teacher = teacher_for(config, base)  # before the heads are removed
    model = base.cpu().eval()
    scores = pruning.head_importance(model, batches)
    keep = pruning.heads_to_keep(scores, config.amount)
    pruning.prune_heads(model, keep)
    epochs, row = adamw_finetune(
        model, config, epochs_scale=epochs_scale, subset=subset, quiet=quiet,
        teacher=teacher,
    )  # fmt: skip
    importance = {p: [round(float(v), 6) for v in s] for p, s in scores.items()}
    schedule = [{"importance": importance, "removed": config.amount}, row]
    return Result(model.cpu().eval(), epochs, arch={"keep": keep}, schedule=schedule)
