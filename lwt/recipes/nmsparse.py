"""One-shot N:M (2:4) or unstructured sparsity of a transformer's linear layers from
calibration data (magnitude, Wanda or SparseGPT), then a short fine-tune with the
mask fixed: the LLM-era recipe (Frantar & Alistarh 2023; Sun et al. 2024), with the
fine-tune that a small model can afford.

The mask is chosen once, before fine-tuning, and held by ``torch.nn.utils.prune``
masks while training (``pruning.set_mask``), so every group of ``m`` inputs keeps at
most ``n`` weights; the masks are made permanent before the checkpoint is saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from .. import models, oneshot, pruning
from ._common import (
    Result,
    TransformerFinetune,
    adamw_finetune,
    calibration_batches,
    teacher_for,
)


@dataclass(frozen=True)
class Config(TransformerFinetune):
    """Settings of one-shot sparsity + fine-tuning of a shipped transformer."""

    METHOD: ClassVar[str] = "nmsparse"
    method: str = "sparsegpt"  # "magnitude", "wanda" or "sparsegpt"
    n: int | None = 2
    m: int | None = 4
    amount: float | None = None  # unstructured instead of n:m
    prefix: str = "blocks."  # the linear layers pruned: those under this path

    def __post_init__(self) -> None:
        if self.amount is not None and (self.n, self.m) != (None, None):
            raise ValueError("pass amount (unstructured) with n=None, m=None, or n:m "
                             "alone")  # fmt: skip
        if self.method not in oneshot.PRUNE_METHODS:
            raise ValueError(f"method must be one of {oneshot.PRUNE_METHODS}, "
                             f"got {self.method!r}")  # fmt: skip


METHOD = Config.METHOD


def build(config: Config, arch: dict) -> nn.Module:
    """The base's architecture (pruned weights are zeros in the state dict)."""
    return models.create_model(config.model)


def run(
    config: Config,
    base: nn.Module,
    *,
    epochs_scale: float = 1.0,
    subset: int | None = None,
    quiet: bool = True,
) -> Result:
    """Prune in one shot, fine-tune with the masks fixed, make them permanent."""
    layers = [n for n in oneshot.linear_layers(base) if n.startswith(config.prefix)]
    batches = calibration_batches(config.model, config.calibration, config.seed)
    teacher = teacher_for(config, base)  # before the one-shot pruning
    model = oneshot.prune_oneshot(base.cpu().eval(), batches, method=config.method,
                                  amount=config.amount, n=config.n, m=config.m,
                                  layers=layers)  # fmt: skip
    for name in layers:
        layer = model.get_submodule(name)
        pruning.set_mask(layer, layer.weight.detach() != 0)
    epochs, row = adamw_finetune(
        model, config, epochs_scale=epochs_scale, subset=subset, quiet=quiet,
        teacher=teacher,
    )  # fmt: skip
    pruning.make_permanent(model)
    pattern = f"{config.n}:{config.m}" if config.n else f"{config.amount:.0%}"
    schedule = [{"pruned": config.method, "pattern": pattern, "layers": len(layers),
                 "calibration_images": config.calibration}, row]  # fmt: skip
    return Result(model.cpu().eval(), epochs, schedule=schedule)
