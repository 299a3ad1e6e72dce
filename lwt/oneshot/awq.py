"""AWQ (Lin et al. 2024), activation-aware weight quantization: scale each input channel
of a weight up before rounding, and the activation down by the same factor, so that the
weights of salient channels (those with large activations) lose less to rounding.

For ``W (rows, cols)``, per-input-channel scales ``s = ā^α`` (``ā_j`` the mean ``|x_j|``
on calibration data, normalised so that ``max(s)·min(s) = 1``), the effective weight is

    Ŵ(α) = Q(W · diag(s)) · diag(s)⁻¹

(``Q`` the group-wise RTN grid of ``groupwise``; in deployment ``diag(s)⁻¹`` is folded
into the operation before the layer, e.g. a LayerNorm). ``α`` is searched on a grid in
[0, 1] for the smallest layer error ``||W X − Ŵ X||²`` on the calibration inputs;
``α = 0`` is plain RTN, so AWQ is never worse than RTN on its calibration data.
"""

from __future__ import annotations

from torch import Tensor

from .gptq import layer_error
from .groupwise import rtn


def awq_scales(amean: Tensor, alpha: float) -> Tensor:
    """``s = ā^α``, normalised by ``sqrt(max(s)·min(s))``."""
    s = amean.float().clamp(min=1e-4) ** alpha
    return s / (s.max() * s.min()).sqrt()


def awq_quantize(
    weight: Tensor,
    hessian: Tensor,
    amean: Tensor,
    bits: int,
    group_size: int,
    *,
    grid: int = 20,
) -> tuple[Tensor, Tensor, float]:
    """AWQ of one weight matrix: ``(Ŵ, s, α)`` for the best ``α`` of
    ``{0, 1/grid, …, 1}`` (the effective dequantized weight, the scales, ``α``)."""
    if amean.shape != (weight.shape[1],):
        raise ValueError(
            f"amean must have {weight.shape[1]} entries, got {tuple(amean.shape)}"
        )
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}")
    w = weight.detach().float()
    best = None
    for k in range(grid + 1):
        alpha = k / grid
        s = awq_scales(amean, alpha)
        approx = rtn(w * s[None, :], bits, group_size)[0] / s[None, :]
        err = layer_error(w, approx, hessian)
        if best is None or err < best[0]:
            best = (err, approx, s, alpha)
    return best[1], best[2], best[3]
