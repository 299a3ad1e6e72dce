"""Checks of notebook 01 (pruning): the magnitude mask and filter surgery.

Rules the checks enforce (and the notebook states): the mask zeroes exactly
``k = round(amount · n)`` entries (Python's ``round``), those of smallest ``|w|``;
among
weights tied at the threshold any may go, but no more than ``k`` in all. Removing filter
``j`` builds new layers with one channel fewer (output ``j`` of the conv, channel ``j``
of the BatchNorm with its running statistics, ``eps`` and ``momentum``, input ``j`` of
the next conv) and leaves the given layers untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from ..pruning import neurons, surgery, unstructured
from ._check import Guard, attempt, expect_tensor, fail, short, verdict


def _mask_cases() -> list[tuple[str, torch.Tensor, float, str]]:
    gen = torch.Generator().manual_seed(0)
    cases = [
        (
            "worked by hand: w = [0.5, −0.6, 0.3, −0.2, 0.05, 0.4], amount 0.5",
            torch.tensor([0.5, -0.6, 0.3, -0.2, 0.05, 0.4]),
            0.5,
            "rank by magnitude |w|, not by the signed value",
        ),
        (
            "ties at the threshold: [1, 1, 1, 1, 2, 2, 0.5, 0.5], amount 0.5",
            torch.tensor([1.0, 1, 1, 1, 2, 2, 0.5, 0.5]),
            0.5,
            "prune exactly k: a threshold comparison (|w| > t or ≥ t) prunes all or "
            "none of the tied weights",
        ),
        (
            "k = round(0.29 · 100) = 29 (0.29 · 100 is 28.999… in floating point)",
            torch.randn(100, generator=gen),
            0.29,
            "k = round(amount · n), not int(amount · n)",
        ),
        (
            "amount 0: nothing pruned",
            torch.randn(4, 5, generator=gen),
            0.0,
            "amount 0 gives k = 0: an all-ones mask",
        ),
    ]
    shapes = [(50,), (30, 40), (8, 3, 5, 5), (1000,)]
    for t in range(12):
        shape, s = shapes[t % 4], [0.1, 0.3, 0.5, 0.9, 0.99][t % 5]
        cases.append(
            (
                f"random {shape}, amount {s}",
                torch.randn(shape, generator=gen),
                s,
                "zero the round(amount · n) smallest |w|",
            )
        )
    return cases


def check_magnitude_mask(fn: Callable) -> bool:
    """Check ``fn(weight, amount)``: a 0/1 float mask of ``weight``'s shape that
    zeroes exactly ``round(amount · n)`` entries, none larger in ``|w|`` than one it
    keeps."""

    def body() -> str:
        cases = _mask_cases()
        for name, w, s, cause in cases:
            k = w.numel() - int(unstructured.magnitude_mask(w, s).sum())
            before = w.clone()
            got = attempt("my_magnitude_mask", Guard(["pruning"]), fn, w, s)
            if not torch.equal(w, before):
                fail(
                    "the weight was changed",
                    case=name,
                    hint="build a new mask; leave weight as it is",
                )
            expect_tensor(got, w.shape, "return a mask of the weight's shape", name)
            if not got.is_floating_point() or not ((got == 0) | (got == 1)).all():
                fail(
                    "return a float tensor of 0s and 1s",
                    case=name,
                    got=f"{got.dtype}: {short(got)}",
                )
            pruned = int((got == 0).sum())
            if pruned != k:
                fail(
                    f"{pruned} entries zeroed",
                    case=f"{name}: {short(w)}",
                    expected=f"{k} zeroed",
                    got=short(got),
                    hint=cause,
                )
            a = w.abs()
            if pruned and pruned < w.numel() and a[got == 0].max() > a[got == 1].min():
                fail(
                    "a larger |w| was pruned while a smaller one was kept",
                    case=f"{name}: {short(w)}",
                    got=short(got),
                    hint=cause,
                )
        return f"your mask zeroes the right weights in all {len(cases)} cases"

    return verdict(body)


def _surgery_cases() -> list[
    tuple[str, nn.Conv2d, nn.BatchNorm2d, nn.Conv2d, int, str]
]:
    def bn(c: int, **kw: float) -> nn.BatchNorm2d:
        b = nn.BatchNorm2d(c, **kw)
        (
            b.running_mean.uniform_(-1, 1),
            b.running_var.uniform_(0.5, 2),
        )  # trained-looking
        nn.init.uniform_(b.weight, 0.5, 1.5), nn.init.uniform_(b.bias, -0.5, 0.5)
        return b

    torch.manual_seed(0)
    cases = [
        (
            "the first filter (j = 0)",
            nn.Conv2d(3, 6, 3, padding=1),
            bn(6),
            nn.Conv2d(6, 4, 3),
            0,
            "output j of the conv, channel j of the BN, input j of the next conv",
        ),
        (
            "the last filter (j = 5)",
            nn.Conv2d(3, 6, 3, padding=1),
            bn(6),
            nn.Conv2d(6, 4, 3),
            5,
            "keep = every index except j",
        ),
        (
            "BN with eps 1e-3, momentum 0.2; convs without bias",
            nn.Conv2d(3, 6, 3, padding=1, bias=False),
            bn(6, eps=1e-3, momentum=0.2),
            nn.Conv2d(6, 4, 3, bias=False),
            2,
            "copy the BatchNorm's eps and momentum, and its running mean and variance",
        ),
        (
            "stride 2, padding 2, dilation 2 (both convs)",
            nn.Conv2d(3, 6, 3, stride=2, padding=2, dilation=2),
            bn(6),
            nn.Conv2d(6, 4, 3, padding=1, dilation=2),
            3,
            "the new convs keep kernel size, stride, padding and dilation",
        ),
    ]
    for t in range(4):
        j = int(torch.randint(6, (1,)))
        cases.append(
            (
                f"random network {t + 1}, j = {j}",
                nn.Conv2d(3, 6, 3, padding=1),
                bn(6),
                nn.Conv2d(6, 4, 3),
                j,
                "conv → BN → ReLU → conv without filter j",
            )
        )
    return cases


def check_remove_filter(fn: Callable) -> bool:
    """Compare ``fn(conv, bn, next_conv, j)`` with ``lwt.pruning.surgery``: channel
    counts, the network's outputs in eval mode, and the given layers untouched."""

    def body() -> str:
        gen = torch.Generator().manual_seed(0)
        cases = _surgery_cases()
        for name, c, b, n, j, cause in cases:
            keep = torch.tensor([i for i in range(c.out_channels) if i != j])
            ref = nn.Sequential(
                surgery.keep_outputs(c, keep),
                surgery.keep_bn(b, keep),
                nn.ReLU(),
                surgery.keep_inputs(n, keep),
            ).eval()
            states = [
                {k: v.clone() for k, v in m.state_dict().items()} for m in (c, b, n)
            ]
            out = attempt("remove_filter", Guard(["pruning"]), fn, c, b, n, j)
            if not (isinstance(out, tuple) and len(out) == 3):
                fail(
                    "return three layers (conv, bn, next_conv)",
                    case=name,
                    got=type(out).__name__,
                )
            for m, st in zip((c, b, n), states, strict=True):
                if any(not torch.equal(v, m.state_dict()[k]) for k, v in st.items()):
                    fail(
                        "a given layer was changed",
                        case=name,
                        hint="build new layers; leave conv, bn and next_conv alone",
                    )
            conv, norm, nxt = out
            if conv.out_channels == c.out_channels:
                fail(
                    "the conv still has all its filters",
                    case=name,
                    hint="zeroing a filter is not removing it: one filter fewer",
                )
            if (conv.out_channels, norm.num_features, nxt.in_channels) != (
                c.out_channels - 1,
            ) * 3:
                fail(
                    "channel counts",
                    case=name,
                    expected=(c.out_channels - 1,) * 3,
                    got=(conv.out_channels, norm.num_features, nxt.in_channels),
                    hint=cause,
                )
            mine = nn.Sequential(conv, norm, nn.ReLU(), nxt).eval()
            x = torch.randn(2, 3, 12, 12, generator=gen)
            with torch.no_grad():
                try:
                    y = mine(x)
                except RuntimeError as e:
                    fail(
                        "the new network does not run",
                        case=name,
                        got=str(e)[:120],
                        hint=cause,
                    )
                diff = (
                    (y - ref(x)).abs().max().item()
                    if y.shape == ref(x).shape
                    else float("inf")
                )
            if diff > 1e-5:
                fail(
                    f"outputs differ from lwt's (max difference {diff:.3g})",
                    case=name,
                    hint=cause,
                )
        return f"your surgery matches lwt.pruning.surgery in {len(cases)} cases"

    return verdict(body)


def check_apoz(fn: Callable, model: nn.Module, batches: Iterable) -> bool:
    """Exercise 5: compare ``fn(model, batches)`` (the APoZ of ``model.fc1``'s units, a
    fraction per unit) with ``lwt.pruning.activation_stats``; the hook must be gone
    afterwards."""

    def body() -> str:
        batches_ = list(batches)
        want = neurons.activation_stats(model, ["fc1"], batches_)["fc1"].apoz
        hooks = len(model.fc1._forward_hooks)
        got = attempt("my_apoz", Guard(["pruning"]), fn, model, batches_)
        if len(model.fc1._forward_hooks) != hooks:
            fail(
                "a forward hook is still attached to fc1",
                hint="keep the handle register_forward_hook returns; handle.remove()",
            )
        got = torch.as_tensor(got, dtype=torch.float64).flatten()
        if got.shape != want.shape:
            fail(
                "one APoZ per unit of fc1",
                expected=tuple(want.shape),
                got=tuple(got.shape),
            )
        want = want.double()
        if torch.allclose(got, 100 * want, atol=1e-4) and want.abs().sum() > 0:
            fail("percentages", hint="return fractions in [0, 1]")
        bad = (~torch.isclose(got, want.double(), atol=1e-6)).nonzero()
        if len(bad):
            j = int(bad[0])
            fail(
                f"unit {j}'s APoZ differs",
                expected=f"{want[j]:.6f}",
                got=f"{got[j]:.6f}",
                hint="count zeros of ReLU(fc1's output) per unit, divided by the "
                "number of examples seen",
            )
        return f"your APoZ matches lwt's for all {len(want)} units of fc1"

    return verdict(body)


__all__ = ["check_magnitude_mask", "check_remove_filter", "check_apoz"]
