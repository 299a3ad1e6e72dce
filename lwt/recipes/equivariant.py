"""Train the group-equivariant twin of a plain CNN (rotation/flip banks), from scratch.

The plain model's from-scratch recipe (``scratch``), with ``lwt.transfer.P4CNN`` (the
same layout on p4 or p4m feature maps, ``channels`` fields per layer) in its place:
the same data, epochs, rates and seed. ``group="z2"`` (translations only: an ordinary
convolution) trains the plain ``lwt.models.Z2CNN`` at ``channels`` filters per layer,
so a width sweep of both networks runs under one recipe (notebook 04).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from .. import models, transfer
from ._common import FromScratch, fresh_run


@dataclass(frozen=True)
class Config(FromScratch):
    """Settings: the plain twin (``model``: its data), the group, fields per layer."""

    METHOD: ClassVar[str] = "equivariant"
    group: str
    channels: int


METHOD = Config.METHOD


# the rotated-MNIST width sweep (notebook 04): channels per layer of each network, and
# the widths of the shipped pair (seed 0 of them: rotmnist-z2cnn, rotmnist-p4cnn)
WIDTHS: dict[str, tuple[int, ...]] = {
    "z2": (10, 14, 20, 28, 36),
    "p4": (3, 4, 6, 9, 12),
}
PAIR: dict[str, int] = {"z2": 20, "p4": 9}


def sweep_name(group: str, channels: int, seed: int = 0) -> str:
    """The checkpoint of the sweep's ``group`` network ("z2" or "p4") at ``channels``
    and ``seed``: ``rotmnist-<group>cnn`` for seed 0 of the shipped pair, else
    ``rotmnist-<group>cnn-w<channels>``, with ``-s<seed>`` for seeds other than 0."""
    if seed == 0 and PAIR.get(group) == channels:
        return f"rotmnist-{group}cnn"
    return f"rotmnist-{group}cnn-w{channels}" + (f"-s{seed}" if seed else "")


def build(config: Config, arch: dict) -> nn.Module:
    """The equivariant network (random weights); the plain CNN for ``group="z2"``."""
    if config.group == "z2":
        return models.Z2CNN(config.channels)
    return transfer.P4CNN(config.channels, group=config.group)


run = fresh_run(build)  # train build(config, {}) from a seeded initialisation
