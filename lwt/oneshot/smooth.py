"""SmoothQuant (Xiao et al. 2023): migrate the activation's outliers into the weights so
that both quantize to 8 bits per tensor (W8A8).

A linear layer computes ``Y = X Wᵀ``. With per-input-channel factors ``s``,
``Y = (X diag(s)⁻¹)(W diag(s))ᵀ`` exactly; SmoothQuant chooses

    s_j = max|X_j|^α / max|W_{:,j}|^(1−α)

so that, at ``α = 0.5``, channel ``j``'s activation range and weight range become equal
(both ``sqrt(max|X_j| · max|W_{:,j}|)``). ``diag(s)⁻¹`` is folded into the LayerNorm
before the layer (its weight and bias divided by ``s``): no extra operation at
inference.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def smooth_scales(
    act_absmax: Tensor, weights: Sequence[Tensor], alpha: float = 0.5
) -> Tensor:
    """``s_j = max|X_j|^α / max|W_{:,j}|^(1−α)`` over the weights that read the same
    input (e.g. Q, K and V after one LayerNorm)."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    wmax = torch.stack([w.detach().abs().amax(0) for w in weights]).amax(0).float()
    if act_absmax.shape != wmax.shape:
        raise ValueError(f"act_absmax has {tuple(act_absmax.shape)}, the weights read "
                         f"{tuple(wmax.shape)} inputs")  # fmt: skip
    s = act_absmax.float().clamp(min=1e-5) ** alpha / wmax.clamp(min=1e-5) ** (
        1 - alpha
    )
    return s.clamp(min=1e-5)


@torch.no_grad()
def fold_smoothing(norm: nn.LayerNorm, linears: Sequence[nn.Linear], s: Tensor) -> None:
    """In place: ``norm``'s weight and bias divided by ``s``, each linear's input
    columns multiplied by ``s``: the block computes the same function, up to
    rounding."""
    if norm.weight is None or norm.weight.shape != s.shape:
        raise ValueError("norm must be an affine LayerNorm over the linears' inputs")
    for lin in linears:
        if lin.in_features != s.numel():
            raise ValueError(
                f"a linear reads {lin.in_features} inputs, s has {s.numel()}"
            )
    norm.weight.div_(s)
    if norm.bias is not None:
        norm.bias.div_(s)
    for lin in linears:
        lin.weight.mul_(s[None, :])
