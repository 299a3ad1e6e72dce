"""Quantization primitives (量子化): integers, scales and zero points.

Uniform affine quantization (Jacob et al. 2018) stores a real value ``r`` as an
integer ``q`` of ``b`` bits with a scale ``S > 0`` and an integer zero point ``Z``::

    r = S (q - Z),        q = clamp(round(r / S) + Z, q_min, q_max)

*Asymmetric* quantization maps a range ``[lo, hi]`` (widened to contain 0, so that
0.0 is exact) onto ``[0, 2^b - 1]``: ``S = (hi - lo) / (2^b - 1)``,
``Z = round(-lo / S)``. *Symmetric* quantization uses ``Z = 0`` and the signed range
``[-(2^(b-1) - 1), 2^(b-1) - 1]``: ``S = max(|lo|, |hi|) / (2^(b-1) - 1)``. Ranges are
per tensor or per channel (one ``S, Z`` per output channel of a weight).

Fake quantization ``x -> S (q(x) - Z)`` simulates the rounding in float; in training
its gradient is the straight-through estimator (Bengio et al. 2013): 1 where ``x`` is
inside the clipping range, 0 outside.

References: Jacob et al. Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference. CVPR 2018. Krishnamoorthi. Quantizing deep
convolutional networks for efficient inference: A whitepaper. arXiv:1806.08342, 2018.
"""

from __future__ import annotations

import torch
from torch import Tensor


# ------------------------------------------------------------------ primitives
def qrange(bits: int, *, signed: bool = False, narrow: bool = False) -> tuple[int, int]:
    """Integer range of ``bits`` bits: unsigned ``[0, 2^b - 1]``, signed
    ``[-2^(b-1), 2^(b-1) - 1]``; ``narrow`` drops the most negative value."""
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise TypeError(f"bits must be an int, got {type(bits).__name__}")
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be in [1, 16], got {bits}")
    if not signed:
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)) + int(narrow), 2 ** (bits - 1) - 1


def qparams(
    lo: Tensor | float, hi: Tensor | float, bits: int, *, symmetric: bool = False
) -> tuple[Tensor, Tensor]:
    """Scale ``S`` and zero point ``Z`` mapping ``[lo, hi]`` onto ``bits`` bits.

    Asymmetric: ``S = (hi - lo) / (q_max - q_min)``, ``Z = q_min - round(lo / S)``
    after widening the range to contain 0. Symmetric (signed, narrow range):
    ``S = max(|lo|, |hi|) / q_max``, ``Z = 0``. ``lo``/``hi`` may be per-channel
    vectors; the results then have the same shape.
    """
    lo = torch.as_tensor(lo, dtype=torch.float32).clamp(max=0)
    hi = torch.as_tensor(hi, dtype=torch.float32).clamp(min=0)
    qmin, qmax = qrange(bits, signed=symmetric, narrow=symmetric)
    if symmetric:
        if qmax < 1:
            raise ValueError("symmetric quantization needs bits >= 2")
        scale = torch.maximum(-lo, hi) / qmax
    else:
        scale = (hi - lo) / (qmax - qmin)
    scale = scale.clamp(min=torch.finfo(torch.float32).eps)  # all-zero range
    if symmetric:
        return scale, torch.zeros_like(scale, dtype=torch.int32)
    zero = (qmin - torch.round(lo / scale)).clamp(qmin, qmax).to(torch.int32)
    return scale, zero


def _view(param: Tensor | float, x: Tensor, axis: int | None, name: str) -> Tensor:
    """``param`` as a tensor broadcasting along ``axis`` of ``x`` (per channel)."""
    p = torch.as_tensor(param, device=x.device)
    if axis is None:
        if p.numel() != 1:
            raise ValueError(f"{name} has {p.numel()} values; per-tensor needs 1")
        return p.reshape(())
    if not -x.dim() <= axis < x.dim():
        raise ValueError(f"axis must be in [{-x.dim()}, {x.dim() - 1}], got {axis}")
    if p.numel() != x.shape[axis]:
        raise ValueError(
            f"{name} has {p.numel()} values but axis {axis} has {x.shape[axis]}"
        )
    shape = [1] * x.dim()
    shape[axis] = -1
    return p.reshape(shape)


def _checked(x: Tensor, scale: Tensor | float, zero_point: Tensor | float, axis):
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a Tensor, got {type(x).__name__}")
    if x.numel() == 0:
        raise ValueError("x is empty")
    s = _view(scale, x, axis, "scale").to(x.dtype)
    if not bool((s > 0).all()):
        raise ValueError("scale must be > 0")
    return s, _view(zero_point, x, axis, "zero_point").to(x.dtype)


def quantize(
    x: Tensor,
    scale: Tensor | float,
    zero_point: Tensor | float,
    bits: int = 8,
    *,
    symmetric: bool = False,
    axis: int | None = None,
) -> Tensor:
    """Integers ``q = clamp(round(x / S) + Z, q_min, q_max)`` (int32 tensor).

    The grid is the one :func:`qparams` made with the same ``symmetric`` flag:
    unsigned ``[0, 2^b − 1]``, or symmetric (signed, narrow) ``[−(2^(b−1) − 1),
    2^(b−1) − 1]``. Rounds half to even (``torch.round``) and, like torch's
    kernels, multiplies by ``1/S`` instead of dividing, so results equal
    ``torch.fake_quantize_*``.
    """
    qmin, qmax = qrange(bits, signed=symmetric, narrow=symmetric)
    s, z = _checked(x, scale, zero_point, axis)
    return _codes(x, s, z).clamp(qmin, qmax).to(torch.int32)


def _codes(x: Tensor, scale: Tensor, zero: Tensor) -> Tensor:
    """Unclamped ``round(x / S) + Z``, multiplying by ``1/S`` as torch's kernels do."""
    return torch.round(x * (1.0 / scale)) + zero


def dequantize(
    q: Tensor,
    scale: Tensor | float,
    zero_point: Tensor | float,
    *,
    axis: int | None = None,
) -> Tensor:
    """Reals ``r = S (q - Z)``."""
    s, z = _checked(q.float(), scale, zero_point, axis)
    return s * (q.float() - z)


class _FakeQuantSTE(torch.autograd.Function):
    """``S (clamp(round(x/S) + Z) - Z)``; gradient 1 inside the range, 0 outside."""

    @staticmethod
    def forward(ctx, x, scale, zero, qmin, qmax):  # noqa: ANN001, D102
        q = _codes(x, scale, zero)
        ctx.save_for_backward((q >= qmin) & (q <= qmax))
        return (q.clamp(qmin, qmax) - zero) * scale

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, D102
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None, None


def fake_quantize(
    x: Tensor,
    scale: Tensor | float,
    zero_point: Tensor | float,
    bits: int = 8,
    *,
    symmetric: bool = False,
    axis: int | None = None,
) -> Tensor:
    """``dequantize(quantize(x))`` in float, differentiable with the
    straight-through estimator (gradient passed only inside the clipping range);
    ``symmetric`` as in :func:`quantize`."""
    qmin, qmax = qrange(bits, signed=symmetric, narrow=symmetric)
    s, z = _checked(x, scale, zero_point, axis)
    return _FakeQuantSTE.apply(x, s, z, qmin, qmax)


def inputs_of(batch: Tensor | tuple | list) -> Tensor:
    """The input tensor of a batch that is either ``x`` or an ``(x, label)`` pair."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch
