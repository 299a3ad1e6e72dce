"""Pareto fronts: the models no other model beats on both cost and accuracy.

Model ``i`` is *dominated* when some ``j`` costs no more (``c_j <= c_i``) and scores no
less (``s_j >= s_i``), strictly better in one of the two. The front is every
undominated model; sorted by cost, its scores rise strictly, so one pass over the
models in order of ``(cost, -score)`` finds it: keep a model when it beats the best
score seen so far.
"""

from __future__ import annotations

from collections.abc import Sequence


def pareto_front(costs: Sequence[float], scores: Sequence[float]) -> list[int]:
    """Indices of the Pareto-optimal points, cheapest first (lower cost and higher
    score are better; of exact duplicates the first one is kept).

    Args:
        costs: e.g. bytes or milliseconds, one per model.
        scores: e.g. test accuracy, one per model.

    Raises:
        ValueError: lengths differ.
    """
    if len(costs) != len(scores):
        raise ValueError(
            f"costs and scores differ in length: {len(costs)} vs {len(scores)}"
        )
    order = sorted(range(len(costs)), key=lambda i: (costs[i], -scores[i], i))
    front: list[int] = []
    for i in order:
        if not front or scores[i] > scores[front[-1]]:
            front.append(i)
    return front
