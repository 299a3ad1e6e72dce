"""Checks of notebook 04 (transferred filters): CReLU's forward and cost, the p4 bank.

CReLU (Shang et al. 2016): ``z = BN(conv(x))`` with ``C/2`` learned filters, output
``ReLU(cat([z, −z], dim=1))``; weights ``C_in · C/2 · k²`` and MACs
``C_in · C/2 · k² · H · W`` for an ``H × W`` output (the negation costs none).

p4 bank, the rule the check enforces (and the notebook states):
``bank[o·4 + r, i·4 + h] = rot90(w[o, i, (h − r) mod 4], r)`` with ``torch.rot90``'s
direction (counter-clockwise for r = 1 in the dims (−2, −1)); a group convolution built
with the bank is equivariant: turning the input by 90° turns the output and shifts its
planes by one within each field.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .. import measure
from ..transfer import CReLUConv2d, rotations
from ._check import Guard, attempt, expect_tensor, fail, verdict

CRELU_MISTAKES: dict[str, Callable] = {
    "the halves swapped: cat([−z, z])": lambda z: torch.relu(torch.cat([-z, z], 1)),
    "no ReLU: the pair itself": lambda z: torch.cat([z, -z], 1),
    "ReLU before the negation: cat([ReLU(z), −ReLU(z)])": lambda z: torch.cat(
        [torch.relu(z), -torch.relu(z)], 1
    ),
    "concatenated on the batch dim (dim=0), not the channels": lambda z: torch.relu(
        torch.cat([z, -z], 0)
    ),
}


def _crelu_cases() -> list[tuple[str, CReLUConv2d, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    cases = []
    with torch.random.fork_rng():  # the layers' seeds leave the learner's RNG alone
        for name, (cin, cout, k, hw, train) in {
            "(3 → 16, 3×3) in eval mode, BN statistics moved": (3, 16, 3, 8, False),
            "(8 → 6, 5×5) in training mode (batch statistics)": (8, 6, 5, 7, True),
            "(4 → 2, 1×1) in eval mode": (4, 2, 1, 5, False),
        }.items():
            torch.manual_seed(len(cases))
            layer = CReLUConv2d(cin, cout, k, padding=k // 2)
            with torch.no_grad():
                layer.bn.weight.uniform_(0.5, 1.5)
                layer.bn.bias.uniform_(-0.5, 0.5)
                layer.bn.running_mean.uniform_(-0.3, 0.3)
                layer.bn.running_var.uniform_(0.5, 2.0)
            layer.train(train)
            cases.append((name, layer, torch.randn(2, cin, hw, hw, generator=gen)))
    return cases


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, atol=1e-5)


def check_crelu_forward(fn: Callable) -> bool:
    """Compare ``fn(layer, x)`` with ``layer(x)`` for lwt's ``CReLUConv2d`` layers
    (eval and training mode, 1×1 to 5×5), naming the likely mistake; the layer's own
    forward is hidden while ``fn`` runs (use ``layer.conv`` and ``layer.bn``)."""

    def body() -> str:
        for name, layer, x in _crelu_cases():
            state = {k: v.clone() for k, v in layer.state_dict().items()}
            mine = attempt("my_crelu_forward", Guard(["transfer"]), fn, layer, x)
            layer.load_state_dict(state)  # training mode moved the running stats
            with torch.no_grad():
                ref = layer(x)
                z = layer.bn(layer.conv(x))
            layer.load_state_dict(state)
            expect_tensor(mine, ref.shape, "shape of the output", name)
            if not torch.allclose(mine, ref, atol=1e-5):
                hint = next(
                    (m for m, f in CRELU_MISTAKES.items() if _same(mine, f(z))),
                    "z = layer.bn(layer.conv(x)); ReLU(cat([z, −z], dim=1))",
                )
                fail("your output differs from CReLUConv2d's", case=name, hint=hint)
        return ("your forward equals CReLUConv2d's in 3 layers (eval and training "
                "mode): C outputs from C/2 learned filters")  # fmt: skip

    return verdict(body)


def check_crelu_cost(fn: Callable) -> bool:
    """Compare ``fn(in_channels, out_channels, kernel_size, h_out, w_out) ->
    (weights, MACs)`` of a stride-1 CReLU layer with an ``h_out × w_out`` output with
    lwt's count (conv weights; ``measure.count_macs``, hidden while ``fn`` runs)."""

    def body() -> str:
        cases = [(3, 16, 3, 32, 32), (16, 32, 3, 16, 16), (1, 20, 5, 28, 28),
                 (8, 6, 1, 7, 9)]  # fmt: skip
        for cin, cout, k, h, w in cases:
            with torch.random.fork_rng():  # its initialisation draws nothing of yours
                layer = CReLUConv2d(cin, cout, k, padding=k // 2)
            want = (layer.conv.weight.numel(), measure.count_macs(layer, (cin, h, w)))
            guard = Guard(["transfer", "measure.py"])
            got = attempt("my_crelu_cost", guard, fn, cin, cout, k, h, w)
            name = f"{cin} → {cout} channels, {k}×{k}, {h}×{w} output"
            pair = tuple(map(int, got)) if isinstance(got, (tuple, list)) else None
            if pair is None or len(pair) != 2 or pair != want:
                full, half = cin * cout * k * k, cout // 2 * h * w
                hint = {
                    (full, full * h * w): "all C filters counted: only C/2 are learned",
                    (want[0], want[1] // (h * w)): "MACs per position: multiply by H·W",
                    (want[0], want[1] + half): "the negation is a sign flip, no MACs",
                }.get(pair, "weights C_in·(C/2)·k², MACs C_in·(C/2)·k²·H·W")
                fail("(weights, MACs) differ", case=name, expected=want, got=got,
                     hint=hint)  # fmt: skip
        return "your weight and MAC counts equal lwt's for 4 layers"

    return verdict(body)


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


__all__ = ["check_crelu_cost", "check_crelu_forward", "check_p4_bank"]
