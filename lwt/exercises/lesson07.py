"""Checks of notebook 07 (combining): the Pareto front, the latency lookup table, its
prediction of a cut, and the design the learner builds against a budget.

Rules the front check enforces (and the notebook states): model ``i`` is dominated
when some ``j`` has ``cost_j ≤ cost_i`` and ``score_j ≥ score_i``, better in at least
one; the front is every model that is not dominated, cheapest first (equal costs: by
index). Exact duplicates do not dominate each other, so either keeping all of them or
only the first (``lwt.pareto.pareto_front``'s choice) passes. The latency table and
prediction rules are ``lwt.latency``'s (its module docstring).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import torch

from .. import latency, pareto
from ._check import Guard, attempt, fail, verdict


def _dominates(j: int, i: int, costs: list, scores: list) -> bool:
    return (
        costs[j] <= costs[i]
        and scores[j] >= scores[i]
        and (costs[j] < costs[i] or scores[j] > scores[i])
    )


def _all_duplicates(costs: list, scores: list) -> list[int]:
    keep = [
        i
        for i in range(len(costs))
        if not any(_dominates(j, i, costs, scores) for j in range(len(costs)))
    ]
    return sorted(keep, key=lambda i: (costs[i], -scores[i], i))


def check_front(fn: Callable) -> bool:
    """Check ``fn(costs, scores)`` on worked, tie, duplicate, empty and random cases;
    print the first failing case with the model that dominates or is missing."""

    def body() -> str:
        g = torch.Generator().manual_seed(0)
        cases = [
            (
                "worked by hand",
                [10, 5, 20, 5, 30, 1],
                [0.9, 0.8, 0.95, 0.85, 0.95, 0.1],
            ),
            (
                "equal costs: only the best score of a cost can stay",
                [3, 3, 3],
                [0.5, 0.7, 0.6],
            ),
            ("exact duplicates", [2, 1, 2, 1], [0.8, 0.5, 0.8, 0.5]),
            ("one model", [4], [0.3]),
            ("no models", [], []),
            (
                "cheaper is always worse (all on the front)",
                [1, 2, 3, 4],
                [0.1, 0.2, 0.3, 0.4],
            ),
        ]
        cases += [
            (
                f"random {t + 1}",
                torch.randint(0, 8, (30,), generator=g).tolist(),
                torch.randint(0, 8, (30,), generator=g).tolist(),
            )
            for t in range(20)
        ]
        for name, c, s in cases:
            got = attempt("my_pareto_front", Guard(["pareto.py"]), fn, list(c), list(s))
            got = list(got)
            first, every = pareto.pareto_front(c, s), _all_duplicates(c, s)
            if got in (first, every):
                continue
            case = f"{name}: costs {c}, scores {s}" if len(c) <= 8 else name
            for i in got:
                j = next((j for j in range(len(c)) if _dominates(j, i, c, s)), None)
                if j is not None:
                    fail(
                        f"model {i} (cost {c[i]}, score {s[i]}) is dominated by "
                        f"model {j} "
                        f"(cost {c[j]}, score {s[j]})",
                        case=case,
                        expected=first,
                        got=got,
                        hint="keep a model only if it beats the best score so far",
                    )
            missing = [i for i in first if i not in got]
            if missing:
                i = missing[0]
                fail(
                    f"model {i} (cost {c[i]}, score {s[i]}) is missing from the front",
                    case=case,
                    expected=first,
                    got=got,
                    hint="nothing is cheaper and at least as accurate than it",
                )
            fail(
                "order or duplicates",
                case=case,
                expected=f"{first} (or {every})",
                got=got,
                hint="cheapest first; equal costs by index; duplicates all or first",
            )
        return (
            f"your front is right in all {len(cases)} cases (ties and duplicates too)"
        )

    return verdict(body)


def _row(op: str, ms: float, order: int) -> dict:
    return {"node": f"n{order}", "op": op, "ms": ms, "order": order}


def _close(a: dict, b: dict) -> bool:
    return (
        isinstance(a, dict)
        and a.keys() == b.keys()
        and all(abs(float(a[k]) - b[k]) <= 1e-9 for k in b)
    )


def check_latency_table(fn: Callable) -> bool:
    """Check ``fn(profile, convs) -> {conv: ms, "other": ms}`` (``latency.
    conv_latency_table``): conv rows matched to ``convs`` by execution order (the
    profile lists the slowest first), every other kernel summed into ``"other"``."""

    def body() -> str:
        worked = [
            _row("QuantizeLinear", 0.1, 0),
            _row("QLinearConv", 2.0, 1),
            _row("QLinearConv", 1.0, 2),
            _row("QLinearAdd", 0.3, 3),
            _row("QLinearConv", 0.5, 4),
        ]
        names = ["conv1", "layer1.0.conv1", "layer1.0.conv2"]
        rng = random.Random(0)
        cases = [
            ("worked by hand (rows in execution order)", worked, names),
            (
                "the same rows slowest first, as profile_onnx lists them",
                sorted(worked, key=lambda r: -r["ms"]),
                names,
            ),
            (
                "an fp32 file: Conv and FusedConv kernels",
                [_row("FusedConv", 3.0, 0), _row("Conv", 4.0, 1), _row("Relu", 0.2, 2)],
                ["conv1", "layer1.0.conv1"],
            ),
            ("no other kernels", [_row("QLinearConv", 1.5, 0)], ["conv1"]),
        ]
        for t in range(10):
            ops = [
                rng.choice(["QLinearConv", "QLinearAdd", "QuantizeLinear"])
                for _ in range(12)
            ]
            rows = [_row(op, rng.uniform(0.01, 3), i) for i, op in enumerate(ops)]
            convs = [f"c{i}" for i in range(sum(op == "QLinearConv" for op in ops))]
            cases.append(
                (f"random {t + 1}", sorted(rows, key=lambda r: -r["ms"]), convs)
            )
        for name, rows, convs in cases:
            want = latency.conv_latency_table(rows, convs)
            got = attempt(
                "my_latency_table",
                Guard(["latency.py"]),
                fn,
                [dict(r) for r in rows],
                list(convs),
            )
            if _close(got, want):
                continue
            hint = (
                "match the conv rows to the names by row['order'], not by the "
                "profile's order (slowest first)"
            )
            if isinstance(got, dict) and got.get("other") != want["other"]:
                hint = "'other' is the sum of every kernel that is not a convolution"
            fail("the table differs", case=name, expected=want, got=got, hint=hint)
        return f"your table is right in all {len(cases)} cases"

    return verdict(body)


def check_predict(fn: Callable) -> bool:
    """Check ``fn(table, keep) -> ms`` (``latency.predict_ms``): a block's conv1 and
    conv2 scale with its kept fraction (0: dropped), every other entry stays."""

    def body() -> str:
        table = {
            "conv1": 2.0,
            "layer1.0.conv1": 1.0,
            "layer1.0.conv2": 0.5,
            "layer1.1.conv1": 1.0,
            "layer1.1.conv2": 1.0,
            "layer2.0.conv1": 0.4,
            "layer2.0.conv2": 0.4,
            "layer2.0.downsample.0": 0.2,
            "other": 0.4,
        }
        cases = [
            ("nothing cut", {}),
            ("layer1.1 dropped", {"layer1.1": 0.0}),
            ("layer1.0 at half its inner channels", {"layer1.0": 0.5}),
            ("a downsample conv is not an inner conv", {"layer2.0": 0.25}),
            ("drop one, thin another", {"layer1.1": 0.0, "layer2.0": 0.5}),
        ]
        rng = random.Random(1)
        for t in range(10):
            keep = {
                b: rng.choice([0.0, 0.25, 0.5, 1.0])
                for b in ("layer1.0", "layer1.1", "layer2.0")
                if rng.random() < 0.7
            }
            cases.append((f"random {t + 1}", keep))
        for name, keep in cases:
            want = latency.predict_ms(table, keep)
            got = attempt(
                "my_predict_ms", Guard(["latency.py"]), fn, dict(table), dict(keep)
            )
            if isinstance(got, (int, float)) and abs(float(got) - want) <= 1e-9:
                continue
            hint = "every conv of a block scales with its kept fraction"
            if "downsample" in name:
                hint = "only a block's conv1 and conv2 follow its inner channels"
            elif not keep:
                hint = "nothing cut: the sum of every entry, 'other' included"
            fail(
                "the prediction differs",
                case=f"{name}: keep {keep}",
                expected=round(want, 6),
                got=got,
                hint=hint,
            )
        return f"your prediction is right in all {len(cases)} cases"

    return verdict(body)


def check_design(
    design: str | Path,
    predicted_ms: float,
    *,
    dense: str | Path,
    max_bytes: int = 150_000,
    min_speedup: float = 1.5,
    tolerance: float = 0.25,
    rounds: int = 5,
    repeats: int = 10,
) -> bool:
    """Measure the learner's int8 file against the dense int8 file (ONNX Runtime,
    batch 64, one thread, alternating rounds) and judge the design: its bytes at most
    ``max_bytes``, its speed-up at least ``min_speedup`` (``stats.speedup``: reached,
    or reached within noise), and the prediction within ``tolerance`` of the measured
    time. Prints every criterion with its numbers."""
    from .. import deploy, measure, stats

    design, dense = Path(design), Path(dense)
    x = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    runs = {"dense": deploy.OrtModel(dense), "design": deploy.OrtModel(design)}
    with torch.no_grad():
        lat = measure.compare_latency(runs, x, rounds=rounds, repeats=repeats)
    speed = stats.speedup(
        lat["dense"].samples_ms, lat["design"].samples_ms, rounds=rounds
    )
    measured, size = lat["design"].median_ms, design.stat().st_size
    noise = "; within noise" if speed.low < min_speedup <= speed.ratio else ""
    error = (predicted_ms - measured) / measured
    lines = [
        (size <= max_bytes, f"bytes: {size:,} (budget {max_bytes:,})"),
        (
            speed.ratio >= min_speedup,
            f"speed-up over the dense int8 file at batch 64: {speed} (budget >= "
            f"{min_speedup}x{noise})",
        ),
        (
            abs(error) <= tolerance,
            f"prediction {predicted_ms:.2f} ms, measured {measured:.2f} ms "
            f"({error:+.0%}; within ±{tolerance:.0%})",
        ),
    ]
    if all(ok for ok, _ in lines):
        print("pass: your design meets the budget and your table predicted it")
    else:
        print("not yet: " + "; ".join(t for ok, t in lines if not ok))
    for ok, text in lines:
        print(f"  {'ok ' if ok else 'NO '} {text}")
    return all(ok for ok, _ in lines)


__all__ = ["check_design", "check_front", "check_latency_table", "check_predict"]
