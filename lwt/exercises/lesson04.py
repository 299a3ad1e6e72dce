"""Check of notebook 04 (transferred filters): the p4 filter bank.

Rule the check enforces (and the notebook states):
``bank[o·4 + r, i·4 + h] = rot90(w[o, i, (h − r) mod 4], r)`` with ``torch.rot90``'s
direction (counter-clockwise for r = 1 in the dims (−2, −1)); a group convolution built
with the bank is equivariant: turning the input by 90° turns the output and shifts its
planes by one within each field.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..transfer import rotations
from ._check import Guard, attempt, expect_tensor, fail, verdict


def _variant(
    w: torch.Tensor,
    *,
    sign: int = 1,
    shift: int = 1,
    rows_r_first: bool = False,
    cols_h_first: bool = False,
) -> torch.Tensor:
    """A bank built with one of the usual mistakes (for the hint)."""
    rows = [
        torch.rot90(w.roll(shift * r, dims=2), sign * r, dims=(-2, -1))
        for r in range(4)
    ]
    bank = torch.stack(rows, 1)  # (O, 4, I, 4, k, k)
    if rows_r_first:
        bank = bank.transpose(0, 1)
    if cols_h_first:
        bank = bank.transpose(2, 3)
    return bank.flatten(0, 1).flatten(1, 2)


MISTAKES = {
    "rotation the other way: torch.rot90(·, r) with dims=(-2, -1)": {"sign": -1},
    "planes moved the wrong way: slice (h − r) mod 4, i.e. w.roll(r, dims=2)": {
        "shift": -1
    },
    "slices turned but not moved along the input planes": {"shift": 0},
    "row order: row o·4 + r (rotations inside each output field)": {
        "rows_r_first": True
    },
    "column order: column i·4 + h (planes inside each input field)": {
        "cols_h_first": True
    },
}


def check_p4_bank(fn: Callable) -> bool:
    """Compare ``fn(w)`` with ``lwt.transfer.rotations.group_bank(w, "p4")`` on several
    shapes (a one-pixel filter worked by hand among them), naming the likely mistake,
    then test that the bank is equivariant."""

    def body() -> str:
        gen = torch.Generator().manual_seed(0)
        one = torch.zeros(1, 1, 4, 3, 3)
        one[0, 0, 0, 0, 2] = 1.0  # top-right pixel of plane 0: easy to follow by hand
        cases = [
            ("worked by hand: one pixel, top right of plane 0", one),
            ("random (3, 2, 4, 3, 3)", torch.randn(3, 2, 4, 3, 3, generator=gen)),
            ("even kernel (2, 3, 4, 2, 2)", torch.randn(2, 3, 4, 2, 2, generator=gen)),
            ("5×5 kernel (1, 2, 4, 5, 5)", torch.randn(1, 2, 4, 5, 5, generator=gen)),
        ]
        for name, w in cases:
            ref = rotations.group_bank(w, "p4")
            mine = attempt("my_p4_bank", Guard(["transfer"]), fn, w.clone())
            expect_tensor(mine, ref.shape, "shape of the bank", name)
            if not torch.equal(mine, ref):
                bad = (mine != ref).flatten(1).any(1).nonzero()[:, 0].tolist()
                hint = next(
                    (
                        m
                        for m, kw in MISTAKES.items()
                        if torch.equal(mine, _variant(w, **kw))
                    ),
                    "bank[o·4 + r, i·4 + h] = rot90(w[o, i, (h − r) mod 4], r)",
                )
                fail(f"rows {bad[:6]} differ from lwt's bank", case=name, hint=hint)
        w = cases[1][1]
        bank = fn(w)
        x = torch.randn(1, 8, 7, 7, generator=gen)  # 2 fields x 4 planes
        xr = torch.rot90(x, 1, (-2, -1)).unflatten(1, (2, 4)).roll(1, 2).flatten(1, 2)
        y, yr = F.conv2d(x, bank), F.conv2d(xr, bank)
        want = torch.rot90(y, 1, (-2, -1)).unflatten(1, (3, 4)).roll(1, 2).flatten(1, 2)
        if not torch.allclose(yr, want, atol=1e-5):
            fail("equal to lwt's bank but not equivariant")
        return (
            f"your p4 bank equals lwt's in {len(cases)} cases, and turning the input "
            "turns and shifts the output"
        )

    return verdict(body)


__all__ = ["check_p4_bank"]
