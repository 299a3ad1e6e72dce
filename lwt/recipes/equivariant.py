"""Train the group-equivariant twin of a plain CNN (rotation/flip banks), from scratch.

The plain model's from-scratch recipe (``scratch``), with ``lwt.transfer.P4CNN`` (the
same layout on p4 or p4m feature maps, ``channels`` fields per layer) in its place:
the same data, epochs, rates and seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from .. import transfer
from ._common import FromScratch, fresh_run


@dataclass(frozen=True)
class Config(FromScratch):
    """Settings: the plain twin (``model``: its data), the group, fields per layer."""

    METHOD: ClassVar[str] = "equivariant"
    group: str
    channels: int


METHOD = Config.METHOD


def build(config: Config, arch: dict) -> nn.Module:
    """The equivariant network (random weights)."""
    return transfer.P4CNN(config.channels, group=config.group)


run = fresh_run(build)  # train build(config, {}) from a seeded initialisation
