"""Li et al. 2017 L1 filter pruning of every ResNet block's inner channels, then
fine-tuning with a one-cycle schedule.

The kept widths are recorded in the manifest (``arch["widths"]``), so a checkpoint is
loaded into fresh layers of those widths without ranking any filter again.

Reference: Li, Kadav, Durdanovic, Samet, Graf. Pruning Filters for Efficient
ConvNets. ICLR 2017.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn
from torchvision.models.resnet import BasicBlock

from .. import models, pruning, train
from ._common import Result, scaled, seeded_loader


@dataclass(frozen=True)
class Config:
    """Settings of a filter-pruning run."""

    METHOD: ClassVar[str] = "filters"
    base: str
    amount: float  # fraction of each block's inner filters removed
    multiple_of: int = 1  # kept widths rounded to a multiple of this
    epochs: int = 10  # fine-tuning, one-cycle
    lr: float = 0.05
    weight_decay: float = 5e-4
    seed: int = 0


METHOD = Config.METHOD


def blocks(model: nn.Module) -> dict[str, BasicBlock]:
    """The ResNet basic blocks of ``model`` by name (their inner widths are pruned)."""
    return {n: m for n, m in model.named_modules() if isinstance(m, BasicBlock)}


def build(config: Config, arch: dict) -> nn.Module:
    """The baseline with each block's inner width set to ``arch["widths"][block]``
    (fresh layers: the checkpoint's weights go in next)."""
    if "widths" not in arch:
        raise ValueError("arch needs 'widths' ({block: kept inner channels})")
    model = models.create_model(config.base)
    found = blocks(model)
    for name, width in arch["widths"].items():
        b = found[name]
        b.conv1 = nn.Conv2d(
            b.conv1.in_channels, width, 3, b.conv1.stride, 1, bias=False
        )
        b.bn1 = nn.BatchNorm2d(width)
        b.conv2 = nn.Conv2d(width, b.conv2.out_channels, 3, 1, 1, bias=False)
    return model


def run(
    config: Config,
    base: nn.Module,
    *,
    epochs_scale: float = 1.0,
    subset: int | None = None,
    quiet: bool = True,
) -> Result:
    """Remove ``config.amount`` of every block's inner filters, then fine-tune."""
    loader = seeded_loader(config.base, config.seed, subset)
    epochs = scaled(config.epochs, epochs_scale)
    pruning.prune_resnet_blocks(base, config.amount, multiple_of=config.multiple_of)
    done = train.onecycle(base, loader, epochs, lr=config.lr,
                          weight_decay=config.weight_decay, quiet=quiet)  # fmt: skip
    widths = {n: b.conv1.out_channels for n, b in blocks(base).items()}
    return Result(base, done, arch={"widths": widths})
