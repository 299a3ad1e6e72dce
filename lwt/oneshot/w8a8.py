"""Simulated W8A8 linear layers: int8 weights (symmetric, one scale per output row)
and int8 activations (symmetric, a static scale from calibration), the setting that
SmoothQuant (``smooth.py``) prepares a model for.

For a linear layer ``y = x Wᵀ + b``::

    s_i = max_j |W_ij| / 127,      Ŵ_ij = s_i · clamp(round(W_ij / s_i), −127, 127)
    s_x   = max |x| / 127  (per tensor; an integer GEMM needs one scale per row of x
                            or per tensor, so per-channel is a reference only)
    x̂     = s_x · clamp(round(x / s_x), −127, 127),    y ≈ x̂ Ŵᵀ + b

with ``max |x|`` the calibration inputs' range. A few input channels with large values
(outliers) stretch ``s_x`` and leave the other channels only a few levels: the problem
LLM.int8() (Dettmers et al. 2022) and SmoothQuant (Xiao et al. 2023) address.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

from torch import Tensor, nn
from torch.nn import functional as F

from .calibration import input_stats, linear_layers, set_module


def _int8(x: Tensor, scale: Tensor) -> Tensor:
    return (x / scale).round().clamp(-127, 127) * scale


class W8A8Linear(nn.Module):
    """A linear layer computed with int8-rounded weights and inputs (simulated)."""

    def __init__(self, layer: nn.Linear, act_absmax: Tensor) -> None:
        super().__init__()
        w = layer.weight.detach().float()
        w_scale = (w.abs().amax(1, keepdim=True) / 127).clamp(min=1e-12)
        self.register_buffer("weight", _int8(w, w_scale))
        self.register_buffer("act_scale", (act_absmax.float() / 127).clamp(min=1e-12))
        self.bias = (
            None if layer.bias is None else nn.Parameter(layer.bias.detach().clone())
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(_int8(x, self.act_scale.to(x.dtype)), self.weight.to(x.dtype),
                        self.bias)  # fmt: skip


def fake_w8a8(
    model: nn.Module,
    batches: Iterable,
    *,
    per_channel_act: bool = False,
    layers: Sequence[str] | None = None,
) -> nn.Module:
    """A copy of ``model`` whose linear layers (default: all) compute in simulated W8A8,
    activation scales per tensor (or per input channel, ``per_channel_act``) from the
    calibration ``batches``; ``model`` is not changed."""
    stats = input_stats(model, batches, layers)
    out = copy.deepcopy(model)
    found = linear_layers(out)
    for name, s in stats.items():
        amax = s.amax if per_channel_act else s.amax.max()
        set_module(out, name, W8A8Linear(found[name], amax))
    return out
