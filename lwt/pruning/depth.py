"""Depth pruning: remove whole residual blocks.

A residual block computes ``y = x + F(x)``. When its shortcut is the identity (same
shape in and out: stride 1, no ``downsample``), deleting the block leaves ``y = x``:
the network still runs, one block shallower (Veit, Wilber, Belongie 2016: a ResNet
behaves like an ensemble of shallower paths, so it survives losing a block; a small
ResNet-20 survives it much worse, and needs fine-tuning afterwards).

Why remove blocks rather than filters? Runtime cost is not only MACs. An int8 kernel
pays a fixed price per output pixel (im2col, requantization) that narrow layers do not
shrink, so at high resolution *fewer layers* save time where *thinner layers* do not
(notebook 07 measures it in ONNX Runtime).

Copy this file into your project: it depends only on torch.

Reference: Veit, Wilber, Belongie. Residual Networks Behave Like Ensembles of
Relatively Shallow Networks. NeurIPS 2016.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn


def removable_blocks(model: nn.Module) -> list[str]:
    """Names of the residual blocks whose shortcut is the identity: blocks with a
    ``conv1`` of stride 1 and ``downsample`` set to ``None`` (torchvision's
    ``BasicBlock``/``Bottleneck`` and ``lwt.models.CifarResNet``'s blocks)."""
    return [
        name
        for name, m in model.named_modules()
        if hasattr(m, "downsample")
        and m.downsample is None
        and isinstance(getattr(m, "conv1", None), nn.Conv2d)
        and m.conv1.stride == (1, 1)
    ]


def drop_blocks(model: nn.Module, names: Iterable[str]) -> nn.Module:
    """Replace each named residual block by ``nn.Identity()`` (``y = x``).

    The other modules keep their names (a block in an ``nn.Sequential`` becomes an
    identity at the same index), so a state dict of the shallower model loads into any
    model with the same blocks dropped.

    Args:
        model: a residual network; changed in place.
        names: blocks to remove, each one of :func:`removable_blocks`.

    Returns:
        ``model``.

    Raises:
        TypeError: ``names`` is a single string.
        ValueError: a name that is not a removable block (the removable ones are
            listed); the model is then left untouched.
    """
    if isinstance(names, str):
        raise TypeError(
            f"names must be a list of block names, got the string {names!r}"
        )
    names = list(names)
    allowed = removable_blocks(model)
    bad = [n for n in names if n not in allowed]
    if bad:
        raise ValueError(
            f"names: {bad} are not residual blocks with an identity shortcut; "
            f"removable: {allowed}"
        )
    for name in names:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, nn.Identity())
    return model
