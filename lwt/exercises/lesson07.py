"""Check of notebook 07 (combining): the Pareto front.

Rules the check enforces (and the notebook states): model ``i`` is dominated when some
``j`` has ``cost_j ≤ cost_i`` and ``score_j ≥ score_i``, better in at least one; the
front
is every model that is not dominated, cheapest first (equal costs: by index). Exact
duplicates do not dominate each other, so either keeping all of them or only the first
(``lwt.pareto.pareto_front``'s choice) passes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import pareto
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


__all__ = ["check_front"]
