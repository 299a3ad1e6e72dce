"""The lesson 08 checks: the solutions notebook 08 will carry pass, and each known-wrong
answer (the lesson's shortcuts and slips) is rejected with a reason.

Notebook 08 is not written yet, so the solutions live here; when it lands, they move to
its collapsed cells and these cases join ``CASES`` in ``test_exercises.py``."""

import pytest
import torch

from lwt.exercises import lesson08
from lwt.oneshot import groupwise, sparse


def my_group_rtn_solution(w, bits, group_size, *, levels=None, per_row=False,
                          clamp_zero=True):  # fmt: skip
    """The solution, with switches that reproduce common slips."""
    qmax = (2**bits - 1) if levels is None else levels
    g = w.reshape(w.shape[0], -1, w.shape[1] if per_row else group_size)
    lo, hi = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
    if clamp_zero:
        lo, hi = lo.clamp(max=0), hi.clamp(min=0)
    scale = ((hi - lo) / qmax).clamp(min=1e-12)
    zero = torch.round(-lo / scale).clamp(0, qmax)
    q = (torch.round(g / scale) + zero).clamp(0, qmax)
    return ((q - zero) * scale).reshape(w.shape)


def my_wanda_prune_solution(weight, x, amount, *, use_norms=True, per_row=True,
                            squared=False):  # fmt: skip
    norms = x.norm(dim=0) ** (2 if squared else 1) if use_norms else 1.0
    score = weight.abs() * norms
    k = round(amount * weight.shape[1])
    keep = torch.ones_like(weight, dtype=torch.bool)
    if per_row:
        keep.scatter_(1, score.argsort(dim=1, stable=True)[:, :k], False)
    else:
        keep.view(-1)[score.flatten().argsort()[: k * weight.shape[0]]] = False
    return weight * keep


def test_the_solutions_pass(capsys):
    assert lesson08.check_group_rtn(my_group_rtn_solution)
    assert lesson08.check_wanda(my_wanda_prune_solution)
    out = capsys.readouterr().out
    assert out.count("pass: ") == 2


WRONG = {
    lesson08.check_group_rtn: {
        "the library": lambda w, b, g: groupwise.rtn(w, b, g)[0],
        "2^b levels instead of 2^b - 1 steps": (
            lambda w, b, g: my_group_rtn_solution(w, b, g, levels=2**b)),
        "one scale per row": (
            lambda w, b, g: my_group_rtn_solution(w, b, g, per_row=True)),
        "range without 0": (
            lambda w, b, g: my_group_rtn_solution(w, b, g, clamp_zero=False)),
        "in place": lambda w, b, g: w.copy_(my_group_rtn_solution(w, b, g)),
        "no rounding": lambda w, b, g: w.clone(),
    },
    lesson08.check_wanda: {
        "the library": lambda w, x, a: w * sparse.row_mask(
            sparse.wanda_scores(w, x.norm(dim=0)), amount=a),
        "magnitude alone": lambda w, x, a: my_wanda_prune_solution(
            w, x, a, use_norms=False),
        "ranked across the layer": lambda w, x, a: my_wanda_prune_solution(
            w, x, a, per_row=False),
        "squared norms": lambda w, x, a: my_wanda_prune_solution(w, x, a, squared=True),
        "norms over samples' rows": lambda w, x, a: w * sparse.row_mask(
            w.abs() * x.norm(dim=1)[: w.shape[1]], amount=a),
        "keeps the lowest": lambda w, x, a: w - my_wanda_prune_solution(w, x, a),
    },
}  # fmt: skip
CASES = [(c, n, f) for c, wrongs in WRONG.items() for n, f in wrongs.items()]


@pytest.mark.parametrize(
    "check,name,wrong", CASES, ids=[f"{c.__name__}-{n}" for c, n, _ in CASES]
)
def test_a_wrong_answer_is_rejected(check, name, wrong, capsys):
    assert not check(wrong)
    out = capsys.readouterr().out
    assert out.startswith("not yet: ") and "pass:" not in out
