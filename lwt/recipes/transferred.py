"""Train a network whose chosen layers use transferred filters (CReLU), from scratch.

The baseline's from-scratch recipe (``scratch``) on a model converted by
``lwt.transfer.to_crelu`` before training: the same epochs, rates and seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from .. import models, transfer
from ._common import FromScratch, fresh_run


@dataclass(frozen=True)
class Config(FromScratch):
    """Settings: the model, the convolutions made CReLU, the training run."""

    METHOD: ClassVar[str] = "transferred"
    crelu: tuple[str, ...]
    negate: bool = True  # False: the control, the same half filters repeated [z, z]


METHOD = Config.METHOD


def build(config: Config, arch: dict) -> nn.Module:
    """The converted model (random weights)."""
    model = models.create_model(config.model)
    return transfer.to_crelu(model, list(config.crelu), negate=config.negate)


run = fresh_run(build)  # train build(config, {}) from a seeded initialisation
