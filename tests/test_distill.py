"""lwt.distill: the loss against its formula, the T² scaling, the frozen teacher."""

import math

import pytest
import torch
from torch import nn

from lwt import distill, measure, models, train


def by_hand(s, t, y, T, alpha):
    """α·T²·(1/N)·Σ_n Σ_c p_t log(p_t / p_s) + (1 − α)·(1/N)·Σ_n −log softmax(s)_y."""
    n = s.shape[0]
    kl = 0.0
    ce = 0.0
    for i in range(n):
        es = [math.exp(v / T) for v in s[i].tolist()]
        et = [math.exp(v / T) for v in t[i].tolist()]
        ps = [v / sum(es) for v in es]
        pt = [v / sum(et) for v in et]
        kl += sum(a * math.log(a / b) for a, b in zip(pt, ps, strict=True))
        e1 = [math.exp(v) for v in s[i].tolist()]
        ce += -math.log(e1[y[i]] / sum(e1))
    return alpha * T * T * kl / n + (1 - alpha) * ce / n


@pytest.mark.parametrize("T,alpha", [(1.0, 0.5), (4.0, 0.9), (20.0, 1.0), (2.0, 0.0)])
def test_kd_loss_matches_the_written_formula(T, alpha):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 10, generator=g) * 3, torch.randn(6, 10, generator=g) * 3
    y = torch.randint(0, 10, (6,), generator=g)
    got = distill.kd_loss(s.double(), t.double(), y, T, alpha).item()
    assert got == pytest.approx(by_hand(s.double(), t.double(), y, T, alpha), rel=1e-9)


def test_kd_loss_is_zero_soft_term_when_student_equals_teacher():
    z = torch.randn(4, 10)
    y = torch.zeros(4, dtype=torch.long)
    assert distill.kd_loss(z, z, y, 4.0, 1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_t_squared_keeps_the_soft_gradient_scale():
    """Hinton et al. §2: the soft term's gradient shrinks as 1/T²; ×T² undoes it."""
    g = torch.Generator().manual_seed(1)
    t = torch.randn(256, 10, generator=g)
    s0 = torch.randn(256, 10, generator=g)
    norms, raw = {}, {}
    for T in (2.0, 5.0, 10.0, 20.0):
        s = s0.clone().requires_grad_(True)
        distill.kd_loss(s, t, torch.zeros(256, dtype=torch.long), T, 1.0).backward()
        norms[T] = s.grad.norm().item()
        raw[T] = norms[T] / T**2  # what dropping T² would give
    assert max(norms.values()) / min(norms.values()) < 3  # roughly constant
    assert raw[2.0] / raw[20.0] > 30  # without T²: ~100x smaller at T = 20


def test_teacher_stays_frozen_in_eval_and_sees_the_same_batch():
    teacher = nn.Sequential(
        nn.Linear(4, 8), nn.Dropout(0.5), nn.BatchNorm1d(8), nn.Linear(8, 3)
    )
    seen = []
    teacher.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    student = nn.Linear(4, 3)
    kd = distill.Distiller(student, teacher, T=2.0, alpha=0.5)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    kd.train()
    assert kd.training and student.training and not teacher.training
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    logits = kd(x)
    assert seen[-1] is x  # the very batch the student saw (same augmentation)
    kd.loss(logits, y).backward()
    opt.step()
    assert all(p.grad is None for p in teacher.parameters())
    # no gradient reaches it, and its requires_grad stays the caller's (issue 29)
    assert all(p.requires_grad for p in teacher.parameters())
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN stats too
    assert set(kd.state_dict()) == {"student.weight", "student.bias"}


def test_distiller_trains_with_the_course_loop_and_evaluates_student_only():
    teacher, student = nn.Linear(4, 3), nn.Linear(4, 3)
    kd = distill.Distiller(student, teacher)
    batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(3)]
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    hist = train.train(kd, batches, 2, opt, loss_fn=kd.loss, device="cpu", quiet=True)
    assert len(hist) == 2
    calls = []
    teacher.register_forward_hook(lambda *a: calls.append(1))
    train.evaluate(kd, batches, "cpu")
    assert not calls  # eval mode runs only the student


@pytest.mark.parametrize(
    "kwargs",
    [dict(T=0.0), dict(T=-1.0), dict(alpha=1.5), dict(alpha=-0.1)],
)
def test_bad_hyperparameters_raise(kwargs):
    s, t, y = torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0, 1])
    args = dict(T=4.0, alpha=0.5) | kwargs
    with pytest.raises(ValueError, match="T|alpha"):
        distill.kd_loss(s, t, y, **args)
    with pytest.raises(ValueError, match="T|alpha"):
        distill.Distiller(nn.Linear(3, 3), nn.Linear(3, 3), **args)


def test_mismatched_shapes_raise():
    with pytest.raises(ValueError, match="same"):
        distill.kd_loss(torch.randn(2, 3), torch.randn(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        distill.kd_loss(torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0]))


@pytest.mark.parametrize("name", ["mobilenet", "resnet14w8"])
def test_students_fit_the_budget(name):
    student = models.create_model(name)
    teacher = models.create_model("resnet20")
    assert measure.count_params(student) <= 0.2 * measure.count_params(teacher)
    shape = models.input_shape_of(name)
    assert student(torch.randn(2, *shape)).shape == (2, 10)
    assert models.dataset_of(name) == "cifar10"

