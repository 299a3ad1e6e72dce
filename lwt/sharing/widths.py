"""Choosing each layer's width (bits per weight) for k-means sharing, on held-out data.

A width sweep shares one layer at a time (the others keep their float weights, no
fine-tuning) and scores each copy with a function the caller supplies (lower is
better: errors or loss on a split the model never trained on). The choice per layer is
the narrowest width that scores within ``slack`` of the unshared model:

    b*(layer) = min { b ∈ candidates : score(share(layer, b)) ≤ score(model) + slack }

(the widest candidate when none qualifies). Each layer is chosen alone, so the joint
model can score worse than any single-layer copy: the errors of shared layers add up,
and the codebook fine-tune that follows is meant to win them back. Deep Compression
(Han, Mao, Dally, ICLR 2016, Tables 2 and 3) reports 8 bits for conv and 5 for fc
layers without describing a search; this is one explicit rule for one.

``score`` is where training and data come in: this file depends only on torch and
its own folder.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from torch import nn

from .kmeans import SHAREABLE, _check_bits, check_shares, shared_copy


def bit_sweep(
    model: nn.Module,
    score: Callable[[nn.Module], float],
    *,
    layers: Iterable[str] | None = None,
    candidates: Iterable[int] = range(1, 9),
) -> dict[str, dict[int, float]]:
    """``{layer: {bits: score}}``: each layer shared alone at each candidate width.

    Args:
        model: the trained (pruned) model; left untouched (copies are scored).
        score: ``model -> number``, lower is better (e.g. validation errors).
        layers: conv/linear layer names (default: all of them).
        candidates: widths in 1..16.

    Raises:
        ValueError: an unknown layer, a width outside 1..16, no candidates, or a
            layer ``share_weights`` could not share at the widest width
            (:func:`check_shares`), all checked before anything is scored.
    """
    if isinstance(layers, str):
        raise TypeError("layers must be a list of layer names, not one string")
    shareable = [n for n, m in model.named_modules() if isinstance(m, SHAREABLE)]
    names = shareable if layers is None else list(layers)
    unknown = sorted(set(names) - set(shareable))
    if unknown:
        raise ValueError(f"layers names {unknown}; conv/linear layers: {shareable}")
    widths = sorted({_check_bits(b, "candidates") for b in candidates})
    if not widths or not names:
        raise ValueError("bit_sweep needs at least one layer and one candidate width")
    check_shares(model, dict.fromkeys(names, widths[-1]))  # each at the widest width
    return {n: {b: float(score(shared_copy(model, {n: b}))) for b in widths}
            for n in names}  # fmt: skip


def choose_bits(
    sweep: dict[str, dict[int, float]], reference: float, *, slack: float = 0.0
) -> dict[str, int]:
    """Per layer, the narrowest width scoring at most ``reference + slack``.

    Args:
        sweep: :func:`bit_sweep`'s table.
        reference: the unshared model's score on the same data.
        slack: how much worse than the reference a width may score (>= 0, in the
            score's unit: e.g. 2 errors).

    Returns:
        ``{layer: bits}``; a layer where no width qualifies gets its widest.
    """
    if not slack >= 0:
        raise ValueError(f"slack must be >= 0, got {slack}")
    if not math.isfinite(reference):
        raise ValueError(f"reference must be a finite score, got {reference}")
    if empty := [n for n, row in sweep.items() if not row]:
        raise ValueError(f"sweep rows {empty} are empty: no width was scored")
    return {
        n: min((b for b, s in row.items() if s <= reference + slack), default=max(row))
        for n, row in sweep.items()
    }


__all__ = ["bit_sweep", "choose_bits"]
