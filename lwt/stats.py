"""Uncertainty (不確かさ) for the course's claims: accuracy intervals, paired accuracy
tests, and speed-up intervals from alternating rounds.

- **Accuracy of one model** on ``n`` test images, ``k`` right: the Wilson score
  interval (Wilson 1927), ``(p̂ + z²/2n ± z sqrt(p̂(1-p̂)/n + z²/4n²)) / (1 + z²/n)``.
- **Two models on the same images**: only the images where exactly one of them is
  right carry information (``b``: A right and B wrong, ``c``: the reverse). McNemar's
  exact test (McNemar 1947): under "no difference" ``b ~ Binomial(b + c, 1/2)``;
  two-sided ``p = min(1, 2 P(X ≤ min(b, c)))``.
- **The difference of two accuracies** on the same images: the mean of the per-image
  differences with its normal-approximation interval (``paired_difference``).
- **A speed-up** ``median(t_base) / median(t_new)`` measured in alternating rounds
  (``measure.compare_latency``): a percentile bootstrap over rounds (Efron & Tibshirani
  1993), resampling the same rounds for both models, so the drift of a shared machine
  that both saw is kept paired. "Faster" only when the interval excludes 1.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


def wilson_interval(
    correct: int, total: int, *, z: float = 1.96
) -> tuple[float, float]:
    """The Wilson score interval of an accuracy ``correct / total`` (95 % at z=1.96)."""
    if total < 1 or not 0 <= correct <= total:
        raise ValueError(f"need 0 <= correct <= total and total >= 1, got "
                         f"{correct}, {total}")  # fmt: skip
    p, n = correct / total, total
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, mid - half), min(1.0, mid + half)


@dataclass(frozen=True)
class Paired:
    """Two models on the same images: accuracies, discordant counts, McNemar's p."""

    acc_a: float
    acc_b: float
    a_only: int  # images A gets right and B wrong
    b_only: int
    p_value: float
    n: int

    def __str__(self) -> str:
        return (f"{100 * self.acc_a:.2f} % vs {100 * self.acc_b:.2f} % on {self.n:,} "
                f"images: {self.a_only} right only by A, {self.b_only} only by B, "
                f"McNemar p = {self.p_value:.3g}")  # fmt: skip


def _masks(correct_a: Tensor, correct_b: Tensor) -> tuple[Tensor, Tensor]:
    a, b = torch.as_tensor(correct_a).bool(), torch.as_tensor(correct_b).bool()
    if a.shape != b.shape or a.dim() != 1 or len(a) == 0:
        raise ValueError(f"correct_a and correct_b must be non-empty 1-D masks of "
                         f"one length, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")  # fmt: skip
    return a, b


def mcnemar(correct_a: Tensor, correct_b: Tensor) -> Paired:
    """McNemar's exact test of two models' per-image correctness (bool tensors)."""
    a, b = _masks(correct_a, correct_b)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    m = only_a + only_b
    tail = sum(math.comb(m, i) for i in range(min(only_a, only_b) + 1)) / 2**m
    return Paired(float(a.float().mean()), float(b.float().mean()), only_a, only_b,
                  min(1.0, 2 * tail), len(a))  # fmt: skip


def paired_difference(
    correct_a: Tensor, correct_b: Tensor, *, z: float = 1.96
) -> tuple[float, float, float]:
    """Accuracy of A minus accuracy of B on the same images, with its normal-
    approximation interval from the per-image differences ``d_i ∈ {-1, 0, 1}``:
    ``mean(d) ± z · sd(d) / sqrt(n)`` (95 % at z = 1.96)."""
    a, b = _masks(correct_a, correct_b)
    d = a.float() - b.float()
    mean = float(d.mean())
    half = z * float(d.std()) / len(d) ** 0.5 if len(d) > 1 else float("inf")
    return mean, mean - half, mean + half


@torch.no_grad()
def correct_mask(model, batches) -> Tensor:  # noqa: ANN001
    """Per-image correctness (bool) of ``model`` over ``(x, y)`` batches, in order."""
    if isinstance(model, torch.nn.Module):
        model.eval()
    out = [model(x).argmax(1).cpu() == y for x, y in batches]
    if not out:
        raise ValueError("batches is empty")
    return torch.cat(out)


@dataclass(frozen=True)
class Speedup:
    """``ratio = median(base) / median(new)`` with its bootstrap interval."""

    ratio: float
    low: float
    high: float

    @property
    def verdict(self) -> str:
        """"faster", "slower" or "no measurable difference" (interval vs 1)."""
        if self.low > 1:
            return "faster"
        if self.high < 1:
            return "slower"
        return "no measurable difference"

    def __str__(self) -> str:
        return f"{self.ratio:.2f}x [{self.low:.2f}, {self.high:.2f}]"


def speedup(
    base: Sequence[float],
    new: Sequence[float],
    *,
    rounds: int,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Speedup:
    """Speed-up of ``new`` over ``base`` from alternating-round samples (ms).

    ``base`` and ``new`` are ``Latency.samples_ms`` from ``measure.compare_latency``
    with ``rounds`` rounds (each holds ``rounds`` equal runs of samples, in order).
    """
    if rounds < 2:
        raise ValueError(f"rounds must be >= 2 for an interval, got {rounds}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if len(base) % rounds or len(new) % rounds or not base or not new:
        raise ValueError(f"base and new ({len(base)} and {len(new)} samples) must each "
                         f"split into {rounds} rounds of equal length")  # fmt: skip
    split = [[list(s[i * len(s) // rounds:(i + 1) * len(s) // rounds])
              for i in range(rounds)] for s in (base, new)]  # fmt: skip
    rng = random.Random(seed)
    ratios = []
    for _ in range(resamples):
        pick = [rng.randrange(rounds) for _ in range(rounds)]
        a = [t for i in pick for t in split[0][i]]
        b = [t for i in pick for t in split[1][i]]
        ratios.append(statistics.median(a) / statistics.median(b))
    ratios.sort()
    k = min(resamples - 1, round((1 - confidence) / 2 * resamples))
    lo, hi = ratios[k], ratios[resamples - 1 - k]
    return Speedup(statistics.median(base) / statistics.median(new), lo, hi)


def target_verdict(
    value: float,
    low: float,
    high: float,
    *,
    at_most: float | None = None,
    at_least: float | None = None,
) -> str:
    """A target against a measured ``value`` and its interval ``[low, high]``.

    "reached" when the whole interval is on the target's side of the limit, "not
    reached" when all of it is on the other side; when the interval spans the limit,
    "reached within noise" or "missed within noise", by the side ``value`` is on.
    Pass exactly one limit: ``at_most`` (e.g. accuracy lost ≤ 0.01) or ``at_least``
    (e.g. a speed-up ≥ 1.3)."""
    if (at_most is None) == (at_least is None):
        raise ValueError("pass exactly one of at_most and at_least")
    if at_most is not None:
        ok, clear, wrong = value <= at_most, high <= at_most, low > at_most
    else:
        ok, clear, wrong = value >= at_least, low >= at_least, high < at_least
    if clear or wrong:
        return "reached" if clear else "not reached"
    return "reached within noise" if ok else "missed within noise"


__all__ = ["Paired", "Speedup", "correct_mask", "mcnemar", "paired_difference",
           "speedup", "target_verdict", "wilson_interval"]  # fmt: skip
