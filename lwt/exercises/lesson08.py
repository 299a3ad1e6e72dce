"""Checks of notebook 08 (transformers): group-wise RTN and Wanda pruning.

Rules the checks enforce (and the notebook states):

- ``my_group_rtn(w, bits, group_size) -> ŵ``: for each row and each group of
  ``group_size`` consecutive columns, asymmetric ``bits``-bit RTN on the group's own
  range (extended to include 0): ``S = (max − min) / (2^b − 1)``, ``Z = round(−min/S)``,
  ``ŵ = S · (clamp(round(w/S) + Z, 0, 2^b − 1) − Z)``; ``w`` is not changed.
- ``my_wanda_prune(weight, x, amount) -> pruned``: score ``|W_ij| · ||X_:,j||₂`` (``x``
  is ``(samples, in_features)``), and in **each row** the ``round(amount · in)``
  lowest scores set to zero; ``weight`` is not changed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..oneshot import groupwise, sparse
from ._check import Guard, attempt, expect_tensor, fail, short, verdict

_HIDDEN = ["oneshot"]


def _rtn_cases() -> list[tuple[str, torch.Tensor, int, int, str]]:
    g = torch.Generator().manual_seed(8)
    outlier = torch.randn(4, 32, generator=g)
    outlier[1, 3] = 40.0
    return [
        ("worked by hand: one row, two groups of 4, 2 bits",
         torch.tensor([[0.0, 1.0, 2.0, 3.0, -1.0, 0.0, 1.0, 2.0]]), 2, 4,
         "each group has its own S and Z; 2 bits give 4 levels, S = range / 3"),
        ("all-positive group (its range must include 0)",
         torch.tensor([[1.0, 2.0, 3.0, 4.0]]), 2, 4,
         "min = min(w, 0) and max = max(w, 0): zero must be exactly representable"),
        ("an outlier spoils only its own group (4 rows, g = 8, 4 bits)",
         outlier, 4, 8, "one scale per (row, group), not per row or per tensor"),
        ("random, 3 bits, g = 16", torch.randn(6, 64, generator=g), 3, 16,
         "round(w / S) + Z, clamped to [0, 2^b − 1]"),
        ("random, 8 bits, g = 32", torch.randn(3, 64, generator=g), 8, 32,
         "2^b − 1 steps across the range"),
    ]  # fmt: skip


def check_group_rtn(fn: Callable) -> bool:
    """Compare ``fn(w, bits, group_size)`` with ``lwt.oneshot.groupwise.rtn``."""

    def body() -> str:
        cases = _rtn_cases()
        for name, w, bits, g, cause in cases:
            before = w.clone()
            got = attempt("my_group_rtn", Guard(_HIDDEN), fn, w, bits, g)
            if not torch.equal(w, before):
                fail("w was changed", case=name, hint="work on a copy")
            expect_tensor(got, tuple(w.shape), "ŵ must have the shape of w", name)
            want = groupwise.rtn(w, bits, g)[0]
            close = torch.isclose(got.float(), want, atol=1e-5, rtol=1e-5)
            if not close.all():
                r = int((~close).any(1).nonzero()[0])
                fail(f"ŵ differs from lwt's in row {r}", case=name,
                     expected=short(want[r]), got=short(got[r]),
                     hint=cause)  # fmt: skip
        return f"your group-wise RTN matches lwt.oneshot's in {len(cases)} cases"

    return verdict(body)


def _wanda_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, float, str]]:
    g = torch.Generator().manual_seed(9)
    # by hand: column 1 has a large input norm, so its small weight survives
    w = torch.tensor([[1.0, 0.2, 0.9, -0.5]])
    x = torch.tensor([[1.0, 10.0, 1.0, 1.0], [1.0, 10.0, 1.0, 1.0]])
    rows = torch.randn(8, 32, generator=g)
    rows[0] *= 10  # one row of large weights: a layer-wide ranking would spare it
    xs = torch.randn(64, 32, generator=g) * torch.linspace(0.1, 3, 32)
    return [
        ("worked by hand: a small weight on a loud input survives",
         w, x, 0.5, "score = |W_ij| · ||X_:,j||₂, not |W| alone"),
        ("one row of large weights (8 × 32, 50 %)", rows, xs, 0.5,
         "compare scores within each output row, not across the layer"),
        ("random, 25 %", torch.randn(4, 16, generator=g),
         torch.randn(20, 16, generator=g) * torch.linspace(0.2, 2, 16), 0.25,
         "drop round(amount · in_features) per row"),
    ]  # fmt: skip


def check_wanda(fn: Callable) -> bool:
    """Compare ``fn(weight, x, amount)`` with ``lwt.oneshot.sparse``'s Wanda."""

    def body() -> str:
        cases = _wanda_cases()
        for name, w, x, amount, cause in cases:
            before = w.clone()
            got = attempt("my_wanda_prune", Guard(_HIDDEN), fn, w, x, amount)
            if not torch.equal(w, before):
                fail("weight was changed", case=name, hint="return a pruned copy")
            expect_tensor(
                got, tuple(w.shape), "the result must have weight's shape", name
            )
            keep = sparse.row_mask(sparse.wanda_scores(w, x.norm(dim=0)), amount=amount)
            want = w * keep
            wrong = ((got != 0) != keep).any(1) | ~torch.isclose(got, want).all(1)
            if wrong.any():
                r = int(wrong.nonzero()[0])
                fail(
                    f"row {r}: a different set of weights was pruned",
                    case=name,
                    expected=short(want[r]),
                    got=short(got[r]),
                    hint=cause,
                )
        return f"your Wanda pruning matches lwt.oneshot.sparse in {len(cases)} cases"

    return verdict(body)


__all__ = ["check_group_rtn", "check_wanda"]
