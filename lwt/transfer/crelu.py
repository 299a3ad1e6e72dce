"""Transferred filters (転移フィルター): a filter bank made from fewer free filters.

CReLU (Shang et al. 2016, "Understanding and Improving Convolutional Neural Networks
via Concatenated Rectified Linear Units"): trained CNNs' lower layers learn filters in
opposite-phase pairs (w and roughly −w). CReLU builds the pair in: learn ``C/2``
filters and output

    CReLU(z) = ReLU([z, −z]),   z = BN(W * x),  W: (C/2, C_in, k, k)

so a layer keeps ``C`` output channels with half the free weights. BatchNorm sits on
the ``C/2`` learned channels, before the concatenation, so the two halves stay exact
negations (a BN after it would give each half its own affine parameters).

The control (``negate=False``): ``ReLU([z, z])``, the same ``C/2`` filters with the same
parameters, MACs and output width, but no opposite phase — a plain ReLU layer with half
the filters whose outputs are repeated so that the layers after it are unchanged. CReLU
against it isolates the transferred (negated) filters from "half the filters".

Depends only on torch (part of the ``lwt.transfer`` folder; it also stands alone).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CReLUConv2d(nn.Module):
    """``conv → BN → ReLU`` with ``out_channels`` outputs from ``out_channels/2``
    learned filters: ``ReLU(cat([z, −z]))``, ``z = BN(conv(x))`` (module docstring).

    Args:
        in_channels, out_channels: as ``nn.Conv2d``; ``out_channels`` must be even.
        kernel_size, stride, padding: as ``nn.Conv2d`` (square kernels).
        bn: batch-normalise the learned half (else the conv has a bias).
        relu: apply the ReLU here; ``False`` returns ``[z, −z]`` for a model whose
            own ReLU follows (``to_crelu`` does this: an in-place ReLU after a ReLU
            output would break autograd).
        negate: ``False`` gives the control ``[z, z]`` (module docstring).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        *,
        bn: bool = True,
        relu: bool = True,
        negate: bool = True,
    ) -> None:
        if out_channels <= 0 or out_channels % 2:
            raise ValueError(
                f"out_channels must be a positive even number, got {out_channels}"
            )
        super().__init__()
        half = out_channels // 2
        self.conv = nn.Conv2d(
            in_channels, half, kernel_size, stride, padding, bias=not bn
        )
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        self.bn = nn.BatchNorm2d(half) if bn else nn.Identity()
        self.out_channels, self.relu, self.negate = out_channels, relu, negate

    def forward(self, x: Tensor) -> Tensor:
        z = self.bn(self.conv(x))  # (N, C/2, H, W)
        pair = torch.cat([z, -z if self.negate else z], dim=1)  # (N, C, H, W)
        return torch.relu(pair) if self.relu else pair


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, child = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), child


def to_crelu(
    model: nn.Module, convs: list[str] | tuple[str, ...], *, negate: bool = True
) -> nn.Module:
    """Replace each named ``conv → bn → ReLU`` by a :class:`CReLUConv2d` (in place).

    Each conv ``P.convK`` must have a BatchNorm sibling ``P.bnK`` and be followed by a
    ReLU in the model's forward (true of ResNet's stem ``conv1`` and of every basic
    block's ``conv1``; not of a block's ``conv2``, whose ReLU comes after the
    residual addition). The conv is replaced by a fresh, randomly initialised
    CReLU conv (without its own ReLU: the model's ReLU completes it) and the BN by
    ``nn.Identity``: a model to train, not a trained one.

    Args:
        model: e.g. ``lwt.models.create_model("resnet20")``.
        convs: qualified names of the convolutions to convert.
        negate: ``False`` builds the control ``[z, z]`` instead (module docstring).

    Returns:
        ``model``, converted (unchanged if a name is invalid: all are checked first).
    """
    if isinstance(convs, str):
        raise TypeError("convs must be a list of module names, not one string")
    modules = dict(model.named_modules())
    plan = []
    for name in convs:
        conv = modules.get(name)
        if not isinstance(conv, nn.Conv2d):
            raise ValueError(f"convs: {name!r} is not an nn.Conv2d of the model")
        prefix, _, leaf = name.rpartition(".")
        bn_name = (prefix + "." if prefix else "") + leaf.replace("conv", "bn", 1)
        if not isinstance(modules.get(bn_name), nn.BatchNorm2d):
            raise ValueError(f"convs: {name!r} has no BatchNorm2d sibling {bn_name!r}")
        k, s, p = conv.kernel_size, conv.stride, conv.padding
        if k[0] != k[1] or s[0] != s[1] or p[0] != p[1] or conv.groups != 1:
            raise ValueError(f"convs: {name!r} must be a square, ungrouped conv")
        if conv.out_channels % 2:
            raise ValueError(f"convs: {name!r} has an odd number of output channels")
        plan.append((name, bn_name, conv))
    for name, bn_name, conv in plan:
        new = CReLUConv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size[0],
            conv.stride[0],
            conv.padding[0],
            relu=False,
            negate=negate,
        ).to(conv.weight.device)
        parent, child = _parent(model, name)
        setattr(parent, child, new)
        parent, child = _parent(model, bn_name)
        setattr(parent, child, nn.Identity())
    return model
