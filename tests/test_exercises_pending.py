"""Checks whose notebooks do not carry the solutions yet: the second pass of lesson
05 (its notebook is re-executed once, after all its changes). The
solutions the notebooks will carry pass, and each known-wrong answer is rejected with a
reason. When a notebook carries its solutions, its cases move to ``CASES`` in
``test_exercises.py``."""

import pytest
import torch
import torch.nn.functional as F

from lwt import distill
from lwt.exercises import lesson05


def _kd(s, t, y, T=4.0, alpha=0.9):
    soft = F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(t / T, 1),
                    reduction="batchmean", log_target=True)  # fmt: skip
    return alpha * T * T * soft + (1 - alpha) * F.cross_entropy(s, y)


def train_step_solution(student, teacher, x, y, opt, *, eval_teacher=True,
                        no_grad=True, zero=True, train_student=True,
                        loss=_kd):  # fmt: skip
    """The solution, with switches that reproduce the usual slips."""
    student.train(train_student)
    if eval_teacher:
        teacher.eval()
    with torch.no_grad() if no_grad else torch.enable_grad():
        t = teacher(x)
    if zero:
        opt.zero_grad()
    value = loss(student(x), t, y)
    value.backward()
    opt.step()
    return value


def test_the_solutions_pass(capsys):
    assert lesson05.check_train_step(train_step_solution)
    assert capsys.readouterr().out.count("pass: ") == 1


WRONG = {
    lesson05.check_train_step: {
        "the library": lambda s, t, x, y, o: train_step_solution(
            s, t, x, y, o, loss=lambda a, b, c: distill.kd_loss(a, b, c)),
        "teacher left in training mode": lambda s, t, x, y, o: train_step_solution(
            s, t, x, y, o, eval_teacher=False),
        "teacher with gradients": lambda s, t, x, y, o: train_step_solution(
            s, t, x, y, o, no_grad=False),
        "gradients never zeroed": lambda s, t, x, y, o: train_step_solution(
            s, t, x, y, o, zero=False),
        "student in eval mode": lambda s, t, x, y, o: train_step_solution(
            s, t, x, y, o, train_student=False),
        "labels only": lambda s, t, x, y, o: train_step_solution(
            s, t, x, y, o, loss=lambda a, b, c: F.cross_entropy(a, c)),
        "teacher on another batch": lambda s, t, x, y, o: train_step_solution(
            s, t, x.flip(0), y, o),
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
