"""Calibration observers: which range ``[lo, hi]`` to quantize a tensor to.

An observer watches the tensors flowing through it (``observer(x)`` returns ``x``) and
then proposes a clipping range for ``b`` bits:

- ``MinMaxObserver``: the smallest and largest value seen. No clipping error, but one
  outlier stretches the grid for everything else.
- ``MovingAverageObserver``: exponential moving average of each batch's min and max,
  ``lo <- lo + m (min(x) - lo)`` (Jacob et al. 2018 use it during QAT).
- ``PercentileObserver``: the ``p``-th and ``(100-p)``-th percentiles of each batch,
  averaged over batches; clips the outliers.
- ``MSEObserver``: the range ``α [lo, hi]`` with ``α`` in ``(0, 1]`` that minimises the
  mean squared quantization error ``E[(x - Q(x))²]`` on the values seen
  (Banner et al., ACIQ, 2019; Krishnamoorthi 2018 Sec. 3.5 compares these).

With ``axis`` set, every statistic is kept per channel of that axis (per-channel
weights: ``axis=0``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .primitives import fake_quantize, qparams

_MAX_SAMPLES = 1 << 16  # values kept per channel for percentile / MSE


class Observer(nn.Module):
    """Base class: keeps ``lo``/``hi`` per channel (one row for per-tensor)."""

    def __init__(self, axis: int | None = None) -> None:
        super().__init__()
        self.axis = axis
        self.register_buffer("lo", torch.empty(0), persistent=False)
        self.register_buffer("hi", torch.empty(0), persistent=False)

    def reset(self) -> None:
        """Forget everything observed."""
        self.lo, self.hi = torch.empty(0), torch.empty(0)

    def rows(self, x: Tensor) -> Tensor:
        """``x`` as ``(channels, values)`` (one row when per-tensor)."""
        x = x.detach().float()
        if self.axis is None:
            return x.reshape(1, -1)
        if not -x.dim() <= self.axis < x.dim():
            raise ValueError(
                f"axis must be in [{-x.dim()}, {x.dim() - 1}], got {self.axis}"
            )
        return x.movedim(self.axis, 0).reshape(x.shape[self.axis], -1)

    def forward(self, x: Tensor) -> Tensor:
        if x.numel() == 0:
            raise ValueError("cannot observe an empty tensor")
        self.update(self.rows(x))
        return x

    def update(self, rows: Tensor) -> None:
        lo, hi = rows.aminmax(dim=1)
        if self.lo.numel():
            lo, hi = torch.minimum(self.lo, lo), torch.maximum(self.hi, hi)
        self.lo, self.hi = lo, hi

    def range(self, bits: int, symmetric: bool) -> tuple[Tensor, Tensor]:
        """The proposed ``(lo, hi)`` per channel for ``bits`` bits."""
        if not self.lo.numel():
            raise RuntimeError("observer has seen no data: calibrate first")
        return self.lo, self.hi


class MinMaxObserver(Observer):
    """Running minimum and maximum."""


class MovingAverageObserver(Observer):
    """Exponential moving average of each batch's minimum and maximum."""

    def __init__(self, axis: int | None = None, momentum: float = 0.1) -> None:
        super().__init__(axis)
        if not 0 < momentum <= 1:
            raise ValueError(f"momentum must be in (0, 1], got {momentum}")
        self.momentum = momentum

    def update(self, rows: Tensor) -> None:
        lo, hi = rows.aminmax(dim=1)
        if self.lo.numel():
            lo = self.lo + self.momentum * (lo - self.lo)
            hi = self.hi + self.momentum * (hi - self.hi)
        self.lo, self.hi = lo, hi


def _sample(rows: Tensor, n: int = _MAX_SAMPLES) -> Tensor:
    if rows.shape[1] <= n:
        return rows
    idx = torch.randint(rows.shape[1], (n,), device=rows.device)
    return rows[:, idx]


class PercentileObserver(Observer):
    """Mean over batches of the ``(100 - p)``-th and ``p``-th percentiles."""

    def __init__(self, axis: int | None = None, percentile: float = 99.99) -> None:
        super().__init__(axis)
        if not 50 < percentile <= 100:
            raise ValueError(f"percentile must be in (50, 100], got {percentile}")
        self.percentile, self.batches = percentile, 0

    def reset(self) -> None:
        super().reset()
        self.batches = 0

    def update(self, rows: Tensor) -> None:
        p = torch.tensor([100 - self.percentile, self.percentile]) / 100
        lo, hi = torch.quantile(_sample(rows), p.to(rows.device), dim=1)
        if self.lo.numel():
            k = self.batches
            lo, hi = (self.lo * k + lo) / (k + 1), (self.hi * k + hi) / (k + 1)
        self.lo, self.hi, self.batches = lo, hi, self.batches + 1


class MSEObserver(Observer):
    """Min-max range shrunk by the factor ``α`` that minimises ``E[(x - Q(x))²]``."""

    def __init__(self, axis: int | None = None, grid: int = 50) -> None:
        super().__init__(axis)
        self.grid = grid
        self.register_buffer("samples", torch.empty(0), persistent=False)

    def reset(self) -> None:
        super().reset()
        self.samples = torch.empty(0)

    def update(self, rows: Tensor) -> None:
        super().update(rows)
        s = _sample(rows)
        self.samples = (
            s
            if not self.samples.numel()
            else _sample(torch.cat([self.samples, s], dim=1))
        )

    def range(self, bits: int, symmetric: bool) -> tuple[Tensor, Tensor]:
        lo, hi = super().range(bits, symmetric)
        x = self.samples  # (C, n)
        best = torch.full_like(lo, float("inf"))
        best_lo, best_hi = lo.clone(), hi.clone()
        for alpha in torch.linspace(1.0 / self.grid, 1.0, self.grid).tolist():
            s, z = qparams(alpha * lo, alpha * hi, bits, symmetric=symmetric)
            err = fake_quantize(x, s, z, bits=bits, symmetric=symmetric, axis=0) - x
            err = err.pow(2).mean(1)
            better = err < best
            best = torch.where(better, err, best)
            best_lo = torch.where(better, alpha * lo, best_lo)
            best_hi = torch.where(better, alpha * hi, best_hi)
        return best_lo, best_hi


OBSERVERS: dict[str, type[Observer]] = {
    "minmax": MinMaxObserver,
    "moving": MovingAverageObserver,
    "percentile": PercentileObserver,
    "mse": MSEObserver,
}


def make_observer(name: str, axis: int | None = None) -> Observer:
    """An observer by name: one of ``OBSERVERS``."""
    if name not in OBSERVERS:
        raise ValueError(f"observer {name!r} unknown; choose from {sorted(OBSERVERS)}")
    return OBSERVERS[name](axis)
