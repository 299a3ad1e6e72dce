"""Checks of notebook 06 (weight sharing and coding): 1-D k-means, Huffman code
lengths and relative sparse indices.

Rules the checks enforce (and the notebook states):

- k-means starts from ``linspace(min, max, k)``, assigns each value to its nearest
  centroid (a value exactly midway goes to either neighbour, by one rule kept
  throughout: ``argmin`` picks the lower one, ``bucketize(..., right=True)`` the
  upper), moves each centroid to its cluster's mean, **leaves an empty cluster's
  centroid where it is**, and
  returns the centroids sorted with labels shaped like the values;
- Huffman lengths: a symbol that never occurs gets length 0, a lone symbol length 1, and
  the code is a prefix code (Kraft sum ≤ 1) exactly as short as Huffman's. Ties may be
  broken any way: only the total length is compared;
- relative indices (Han et al. 2016, Fig. 2): for each nonzero of the flat mask, in
  order, the number of zeros skipped since the previous one; a run of ``2^b − 1`` or
  more zeros first emits filler symbols ``2^b − 1``, each skipping ``2^b − 1`` zeros;
  zeros after the last nonzero emit nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..sharing import fileformat, hashing, huffman, kmeans, sparse_index
from ._check import Guard, attempt, fail, short, verdict


def _kmeans_cases() -> list[tuple[str, torch.Tensor, int, str]]:
    gen = torch.Generator().manual_seed(0)
    two_bumps = torch.cat(
        [
            torch.randn(300, generator=gen) * 0.05 - 0.2,
            torch.randn(200, generator=gen) * 0.08 + 0.15,
        ]
    )
    return [
        (
            "worked by hand: [0, 0, 0, 1, 1, 1, 10], k = 4 (two clusters start empty)",
            torch.tensor([0.0, 0, 0, 1, 1, 1, 10]),
            4,
            "an empty cluster's mean is 0/0 = NaN: leave its centroid where it is",
        ),
        (
            "a value midway: [0, 1, 2], k = 2",
            torch.tensor([0.0, 1, 2]),
            2,
            "a value exactly midway between two centroids goes to one of them, by one"
            " rule (argmin: the lower one)",
        ),
        (
            "one cluster: k = 1",
            two_bumps[:50],
            1,
            "with k = 1 the centroid is the mean",
        ),
        *[
            (
                f"two bumps, k = {k}",
                two_bumps,
                k,
                "linear init torch.linspace(min, max, k); assign to the nearest; "
                "move to the mean; repeat until no label changes",
            )
            for k in (2, 4, 16)
        ],
        (
            "a (3, 40) matrix, k = 8: labels keep the values' shape",
            torch.randn(3, 40, generator=gen),
            8,
            "labels shaped like values",
        ),
    ]


def check_kmeans(fn: Callable) -> bool:
    """Compare ``fn(values, k)`` with ``lwt.sharing.kmeans_1d``: centroids (sorted, to
    1e-4) and labels (equal, except where a value is equidistant from two centroids).

    A value exactly midway between two centroids may go to either, as long as one rule
    is kept: ``kmeans_1d`` sends it to the lower one, and the mirror image of its run
    (on ``-values``) gives the answer of the rule that sends it to the upper one."""

    def body() -> str:
        cases = _kmeans_cases()
        for name, v, k, cause in cases:
            lower = kmeans.kmeans_1d(v, k)
            c_up, lab_up = kmeans.kmeans_1d(-v, k)
            upper = (-c_up.flip(0), k - 1 - lab_up)  # ties to the upper centroid
            out = attempt("my_kmeans_1d", Guard(["sharing"]), fn, v.clone(), k)
            if not (isinstance(out, tuple) and len(out) == 2):
                fail("return (centroids, labels)", case=name, got=type(out).__name__)
            c, lab = (torch.as_tensor(t) for t in out)
            if c.shape != (k,) or lab.shape != v.shape:
                fail(
                    "wrong shapes",
                    case=name,
                    expected=f"centroids ({k},), labels {tuple(v.shape)}",
                    got=f"centroids {tuple(c.shape)}, labels {tuple(lab.shape)}",
                    hint=cause,
                )
            if torch.isnan(c).any():
                fail(
                    "a centroid is NaN",
                    case=name,
                    got=short(c),
                    hint="an empty cluster's mean is 0/0: leave its centroid as it is",
                )
            if not torch.equal(c, c.sort().values):
                fail(
                    "centroids are not sorted",
                    case=name,
                    got=short(c),
                    hint="return the centroids in ascending order",
                )
            ref_c, ref_lab = next(
                (r for r in (lower, upper)
                 if torch.allclose(c.double(), r[0].double(), atol=1e-4)),
                lower,
            )  # fmt: skip
            if not torch.allclose(c.double(), ref_c.double(), atol=1e-4):
                fail(
                    "centroids differ from lwt's",
                    case=name,
                    expected=short(ref_c),
                    got=short(c),
                    hint=cause,
                )
            lab = lab.long()
            d_mine = (v - c.float()[lab.clamp(0, k - 1)]).abs()
            d_ref = (v - ref_c[ref_lab]).abs()
            bad = (
                (lab != ref_lab) & ~torch.isclose(d_mine, d_ref, atol=1e-6)
            ).nonzero()
            if len(bad):
                i = tuple(bad[0].tolist())
                fail(
                    "a value is not in its nearest cluster",
                    case=f"{name}; value {v[i]:.6g}",
                    expected=int(ref_lab[i]),
                    got=int(lab[i]),
                    hint=cause,
                )
        return f"my_kmeans_1d agrees with lwt.sharing.kmeans_1d in {len(cases)} cases"

    return verdict(body)


def _huffman_cases(extra: Sequence[int] | None) -> list[tuple[str, list[int]]]:
    gen = torch.Generator().manual_seed(0)
    cases = [
        ("worked by hand (CLRS's example)", [45, 13, 12, 16, 9, 5]),
        ("one symbol", [7]),
        ("zero counts", [0, 3, 0, 1]),
        ("two symbols", [1, 1000]),
        ("eight equal counts", [4] * 8),
        ("Fibonacci counts (a deep tree)", [1, 1, 2, 3, 5, 8, 13, 21, 34]),
    ]
    for t in range(8):
        counts = torch.randint(
            0, 60, (int(torch.randint(3, 33, (1,), generator=gen)),), generator=gen
        )
        counts[counts < 8] = 0  # some symbols never occur
        counts[0] = max(int(counts[0]), 1)
        cases.append((f"random histogram {t + 1}", counts.tolist()))
    if extra is not None:
        cases.append(("the histogram you passed", list(extra)))
    return cases


def check_code_lengths(fn: Callable, counts: Sequence[int] | None = None) -> bool:
    """Check ``fn(counts)`` (Huffman code lengths) on worked, edge and random
    histograms (and on ``counts`` if given): a length per symbol, 0 exactly for
    unused symbols, a prefix code, and as short in total as Huffman's."""

    def body() -> str:
        cases = _huffman_cases(counts)
        for name, cnt in cases:
            got = attempt("my_code_lengths", Guard(["sharing"]), fn, list(cnt))
            try:
                got = [int(x) for x in got]
            except (TypeError, ValueError):
                fail("return a list of integer lengths", case=name, got=repr(got)[:60])
            want = huffman.code_lengths(cnt)
            if len(got) != len(cnt):
                fail(
                    "one length per symbol",
                    case=f"{name}: {short(cnt)}",
                    expected=f"{len(cnt)} lengths",
                    got=f"{len(got)} lengths",
                )
            shown = {"case": f"{name}: {short(cnt)}", "expected": short(want),
                     "got": short(got)}  # fmt: skip
            for s, (c, ln) in enumerate(zip(cnt, got, strict=True)):
                if (c == 0) != (ln == 0):
                    fail(
                        f"symbol {s} occurs {c} times but has length {ln}",
                        **shown,
                        hint="a symbol that never occurs gets no code (length 0); "
                        "every other symbol, even a lone one, gets at least 1 bit",
                    )
            kraft = sum(2.0**-ln for ln in got if ln)
            if kraft > 1 + 1e-12:
                fail(
                    f"not a prefix code: Kraft sum {kraft:.4f} > 1",
                    **shown,
                    hint="every symbol under a merged node gets one bit longer",
                )
            bits, best = (
                sum(c * ln for c, ln in zip(cnt, got, strict=True)),
                huffman.huffman_bits(cnt),
            )
            if bits != best:
                fail(
                    f"a prefix code, but not optimal: {bits:,} bits, Huffman {best:,}",
                    **shown,
                    hint="always merge the two least frequent nodes (a heap: heapq)",
                )
        return f"optimal prefix codes for all {len(cases)} histograms"

    return verdict(body)


def check_shared_bits(fn: Callable, pruned: nn.Module, bits: dict[str, int]) -> bool:
    """Exercise 2: ``fn()`` returns the pruned model shared at ``bits`` per layer.
    Checks that every layer holds at most ``2^bits`` distinct nonzero values and that
    pruned weights stayed zero."""

    def body() -> str:
        model = attempt("the exercise's function", Guard([]), fn)
        if not isinstance(model, nn.Module):
            fail("return the model", got=type(model).__name__)
        state, before = fileformat.plain_state(model), fileformat.plain_state(pruned)
        for layer, b in bits.items():
            w, w0 = state[f"{layer}.weight"], before[f"{layer}.weight"]
            if w.shape != w0.shape:
                fail(
                    f"{layer} changed shape",
                    expected=tuple(w0.shape),
                    got=tuple(w.shape),
                )
            if (w[w0 == 0] != 0).any():
                fail(
                    f"{layer}: pruned weights are nonzero again",
                    hint="start from the pruned model; sharing keeps zeros at zero",
                )
            n = len(torch.unique(w[w != 0]))
            if n > 2**b:
                fail(
                    f"{layer} holds {n:,} distinct values",
                    expected=f"≤ 2^{b} = {2**b}",
                    got=n,
                    hint=f"share {layer} at {b} bits (sharing.share_weights)",
                )
        return "every layer holds at most 2^bits shared values; pruned weights stay 0"

    return verdict(body)


def check_hashed(fn: Callable, factor: int, sizes: Sequence[tuple[int, int]]) -> bool:
    """Exercise 3: ``fn()`` returns a HashedNets MLP with the virtual layer ``sizes``
    and ``max(1, in·out // factor)`` real weights per layer."""

    def body() -> str:
        model = attempt("the exercise's function", Guard([]), fn)
        layers = [
            m
            for m in model.modules()
            if isinstance(m, (nn.Linear, hashing.HashedLinear))
        ]
        got = [(m.in_features, m.out_features) for m in layers]
        if got != list(sizes):
            fail("virtual layer sizes", expected=list(sizes), got=got)
        for m, (i, o) in zip(layers, sizes, strict=True):
            if not isinstance(m, hashing.HashedLinear):
                fail("a plain nn.Linear", got=f"{i}→{o}", hint="sharing.HashedLinear")
            if m.weight.numel() != max(1, i * o // factor):
                fail(
                    f"{i}→{o} stores {m.weight.numel():,} real weights",
                    expected=f"{max(1, i * o // factor):,} (1/{factor})",
                )
        return f"a HashedNets MLP at 1/{factor}"

    return verdict(body)


def _index_cases() -> list[tuple[str, np.ndarray, int, str]]:
    rng = np.random.default_rng(6)
    by_hand = np.zeros(20, dtype=bool)
    by_hand[[1, 4, 13, 14]] = True  # runs 1, 2, 8, 0 -> 1, 2, filler, 1, 0
    exact = np.zeros(4, dtype=bool)
    exact[3] = True
    return [
        ("worked by hand: 3 bits, runs 1, 2, 8, 0", by_hand, 3,
         "a run of 8 zeros at 3 bits: one filler (7 zeros), then 1"),
        ("a run of exactly 2^b − 1 = 3 zeros (2 bits)", exact, 2,
         "2^b − 1 is the filler: a run of exactly 3 needs a filler, then 0"),
        ("1 bit: every zero is a filler", np.array([0, 0, 1, 0, 1], dtype=bool), 1,
         "with b = 1 the filler is 1"),
        ("trailing zeros", np.array([1, 0, 0, 0, 0, 0, 0, 0, 0], dtype=bool), 2,
         "zeros after the last weight cost nothing: the shape is stored"),
        ("no weights at all", np.zeros(7, dtype=bool), 3,
         "an empty mask has no entries"),
        ("random 2-D mask, 10 % kept, 4 bits", rng.random((20, 15)) < 0.1, 4,
         "flatten the mask in row-major order"),
        ("random, 30 % kept, 2 bits", rng.random(200) < 0.3, 2, "runs and fillers"),
    ]  # fmt: skip


def check_relative_indices(fn: Callable) -> bool:
    """Compare ``fn(mask, bits)`` (symbols, a list or array of ints) with
    ``lwt.sharing.sparse_index.relative_indices``."""

    def body() -> str:
        cases = _index_cases()
        for name, mask, bits, cause in cases:
            got = attempt(
                "my_relative_indices", Guard(["sharing"]), fn, mask.copy(), bits
            )
            want = sparse_index.relative_indices(mask, bits).tolist()
            try:
                got = [int(v) for v in np.asarray(got).ravel()]
            except (TypeError, ValueError):
                fail("return the symbols as a list of ints", case=name, got=type(got))
            if got != want:
                fail("the symbols differ", case=name, expected=short(want, 12),
                     got=short(got, 12), hint=cause)  # fmt: skip
        return f"your relative indices match lwt.sharing's in {len(cases)} cases"

    return verdict(body)


__all__ = [
    "check_relative_indices",
    "check_kmeans",
    "check_code_lengths",
    "check_shared_bits",
    "check_hashed",
]
