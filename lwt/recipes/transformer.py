"""Train a transformer from scratch: AdamW, warm-up and cosine, label smoothing,
bf16 autocast where the machine computes it fast, resumable epoch by epoch.

Vision transformers train with AdamW rather than SGD (Dosovitskiy et al. 2021;
Hassani et al. 2021 train CCT with AdamW, weight decay, label smoothing and a
warm-up). Long runs on a 2-core CPU are stopped and restarted: the run saves its
state after every epoch to ``$LWT_RESUME_DIR`` (default ``~/.cache/lwt/resume``)
under a name that hashes the config, and resumes from it.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, asdict, dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from .. import models, train
from ._common import (
    FromScratch,
    Result,
    precision_of,
    resume_path,
    scaled,
    seeded_loader,
)


@dataclass(frozen=True)
class Config(FromScratch):
    """Settings of a transformer's from-scratch run (``lr`` is AdamW's peak rate)."""

    METHOD: ClassVar[str] = "transformer"
    _: KW_ONLY
    warmup_epochs: int = 5
    label_smoothing: float = 0.1
    precision: str = "auto"  # "auto": bf16 autocast on CUDA or an AMX-BF16 CPU


METHOD = Config.METHOD


def build(config: Config, arch: dict) -> nn.Module:
    """A fresh ``lwt.models`` model (the shapes never change)."""
    return models.create_model(config.model)


def state_path(config: Config, epochs: int, subset: int | None) -> Path:
    """Where this run's resume state lives (one file per config, epochs and subset)."""
    return resume_path(config.model, [asdict(config), epochs, subset])


def run(
    config: Config,
    base: None,
    *,
    epochs_scale: float = 1.0,
    subset: int | None = None,
    quiet: bool = True,
) -> Result:
    """Train ``config.model`` from a seeded random initialisation."""
    if isinstance(config.lr, tuple) or config.validation != 0:
        raise ValueError(f"a transformer recipe trains at one rate on the whole "
                         f"training split: got lr={config.lr!r}, "
                         f"validation={config.validation}")  # fmt: skip
    loader = seeded_loader(
        config.model, config.seed, subset, config.batch_size, config.shift
    )
    model = models.create_model(config.model).to(memory_format=torch.channels_last)
    epochs = scaled(config.epochs, epochs_scale)
    steps = epochs * len(loader)
    warmup = min(config.warmup_epochs * len(loader), steps - 1)
    opt, sched = train.adamw_cosine(
        model, steps, lr=config.lr, weight_decay=config.weight_decay, warmup=warmup
    )
    precision = precision_of(config)
    loss = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    history = train.train_resumable(
        model, loader, epochs, opt, sched, state=state_path(config, epochs, subset),
        loss_fn=loss, precision=precision, quiet=quiet)  # fmt: skip
    seconds = round(sum(row["seconds"] for row in history))
    schedule = [{"precision": precision, "optimizer": "AdamW, warm-up + cosine",
                 "train_seconds_all_sessions": seconds}]  # fmt: skip
    return Result(model.cpu().to(memory_format=torch.contiguous_format),
                  len(history), schedule=schedule)  # fmt: skip
