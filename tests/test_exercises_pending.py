"""Checks whose notebooks do not carry the solutions yet: the second passes of lessons
03 and 05 (their notebooks are re-executed once, after all their changes). The
solutions the notebooks will carry pass, and each known-wrong answer is rejected with a
reason. When a notebook carries its solutions, its cases move to ``CASES`` in
``test_exercises.py``."""

import pytest
import torch
import torch.nn.functional as F

from lwt import distill, lowrank
from lwt.exercises import lesson03, lesson05


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


def _svd_split(layer, r):
    u, sv, vh = torch.linalg.svd(layer.weight.detach(), full_matrices=False)
    first = torch.nn.Linear(layer.in_features, r, bias=False)
    second = torch.nn.Linear(r, layer.out_features)
    first.weight.data = (sv[:r].sqrt()[:, None] * vh[:r]).clone()
    second.weight.data = (u[:, :r] * sv[:r].sqrt()).clone()
    second.bias.data = layer.bias.detach().clone()
    return torch.nn.Sequential(first, second)


def my_layerwise_solution(model, ranks, batches, steps, lr, *, order=sorted,
                          train_all=False, eval_mode=True, task=False):  # fmt: skip
    """Denton et al.'s procedure on an nn.Sequential (switches reproduce slips)."""
    import copy

    original = copy.deepcopy(model).eval()
    model.train(not eval_mode)
    with torch.no_grad():
        targets = [original(x) for x in batches]
    for name in order(ranks, key=int):
        i = int(name)
        model[i] = _svd_split(model[i], ranks[name])
        later = model if train_all else model[i + 1 :]
        params = [p for p in later.parameters()]
        if train_all:
            params = [p for j, m in enumerate(model) if j != i for p in m.parameters()]
        if not params:
            continue
        opt = torch.optim.Adam(params, lr=lr)
        for step in range(steps):
            x, t = batches[step % len(batches)], targets[step % len(batches)]
            opt.zero_grad()
            if task:
                loss = F.cross_entropy(model(x), t.argmax(1))
            else:
                loss = F.mse_loss(model(x), t)
            loss.backward()
            opt.step()
    return model


def test_the_solutions_pass(capsys):
    assert lesson03.check_layerwise(my_layerwise_solution)
    assert lesson05.check_train_step(train_step_solution)
    assert capsys.readouterr().out.count("pass: ") == 2


WRONG = {
    lesson03.check_layerwise: {
        "the library": lambda m, r, b, s, lr: lowrank.layerwise_factorize(
            m, r, b, steps=s, lr=lr, method="svd"),
        "reverse order": lambda m, r, b, s, lr: my_layerwise_solution(
            m, r, b, s, lr, order=lambda d, key: sorted(d, key=key, reverse=True)),
        "earlier layers trained too": lambda m, r, b, s, lr: my_layerwise_solution(
            m, r, b, s, lr, train_all=True),
        "training mode (dropout on)": lambda m, r, b, s, lr: my_layerwise_solution(
            m, r, b, s, lr, eval_mode=False),
        "task loss instead of reconstruction": lambda m, r, b, s, lr: (
            my_layerwise_solution(m, r, b, s, lr, task=True)),
        "no fine-tuning": lambda m, r, b, s, lr: my_layerwise_solution(m, r, b, 0, lr),
    },
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
