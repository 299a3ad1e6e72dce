"""Checks of notebook 05 (distillation): Hinton et al.'s loss, and one training step.

Rule the check enforces (and the notebook states):
``α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1 − α)·CE(s, y)``, the KL summed over classes
and averaged over the batch; α weights the *soft* term (Distiller's docs and Keras
weight
the hard term instead); the teacher's logits are constants.

``train_step(student, teacher, x, y, opt) -> loss``: one distillation step on one batch,
as ``lwt.distill.Distiller`` takes it — the student in training mode, the teacher in
eval mode under ``torch.no_grad()`` on **the same batch** ``x``, the gradients zeroed,
the loss of the first check (T = 4, α = 0.9) back-propagated, and ``opt`` (the
student's optimizer) stepped.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import distill
from ._check import Guard, attempt, fail, verdict


def _kl(
    s: torch.Tensor, t: torch.Tensor, T: float, reduction: str = "batchmean"
) -> torch.Tensor:
    return F.kl_div(
        F.log_softmax(s / T, 1),
        F.log_softmax(t / T, 1),
        reduction=reduction,
        log_target=True,
    )


MISTAKES: dict[str, Callable] = {
    "the T² factor is missing (the soft term fades as 1/T²)": lambda s, t, y, T, a: (
        a * _kl(s, t, T) + (1 - a) * F.cross_entropy(s, y)
    ),
    "F.kl_div(reduction='mean') averages over classes too: use 'batchmean'": (
        lambda s, t, y, T, a: (
            a * T * T * _kl(s, t, T, "sum") / s.numel()
            + (1 - a) * F.cross_entropy(s, y)
        )
    ),
    "the KL is summed over the batch: average it": lambda s, t, y, T, a: (
        a * T * T * _kl(s, t, T, "sum") + (1 - a) * F.cross_entropy(s, y)
    ),
    "α weights the soft term here (Distiller's docs weight the hard term)": (
        lambda s, t, y, T, a: (1 - a) * T * T * _kl(s, t, T) + a * F.cross_entropy(s, y)
    ),
    "KL the wrong way round: KL(p_t ‖ p_s) = Σ p_t (log p_t − log p_s)": (
        lambda s, t, y, T, a: a * T * T * _kl(t, s, T) + (1 - a) * F.cross_entropy(s, y)
    ),
    "the teacher's logits must be divided by T too": lambda s, t, y, T, a: (
        a * T * T * _kl(s, t * T, T) + (1 - a) * F.cross_entropy(s, y)
    ),
}


def check_kd_loss(fn: Callable) -> bool:
    """Compare ``fn(student_logits, teacher_logits, labels, T, alpha)`` with
    ``lwt.distill.kd_loss``: values and gradients, over T ∈ {1, 2, 4, 20}, α ∈ {0, 0.5,
    0.9, 1}, one sample and 100 classes among the cases; names the likely mistake."""

    def body() -> str:
        gen = torch.Generator().manual_seed(0)
        cases = [
            (n, c, T, a)
            for n, c in ((16, 10), (1, 10), (8, 100))
            for T, a in ((1.0, 0.0), (2.0, 0.5), (4.0, 0.9), (20.0, 1.0), (4.0, 1.0))
        ]
        for n, c, T, a in cases:
            name = f"N = {n}, C = {c}, T = {T:g}, alpha = {a:g}"
            s = (torch.randn(n, c, generator=gen) * 3).requires_grad_(True)
            s_ref = s.detach().clone().requires_grad_(True)
            t, y = (
                torch.randn(n, c, generator=gen) * 3,
                torch.randint(0, c, (n,), generator=gen),
            )

            def run(s=s, t=t, y=y, T=T, a=a):
                loss = fn(s, t, y, T, a)
                loss.backward()
                return loss

            mine = attempt("my_kd_loss", Guard(["distill.py"]), run)
            ref = distill.kd_loss(s_ref, t, y, T, a)
            ref.backward()
            if mine.ndim != 0:
                fail(
                    "return one number (a scalar tensor)",
                    case=name,
                    got=tuple(mine.shape),
                )
            if not torch.allclose(mine.detach(), ref.detach(), rtol=1e-5, atol=1e-6):
                with torch.no_grad():
                    hint = next(
                        (
                            m
                            for m, f in MISTAKES.items()
                            if torch.allclose(
                                f(s, t, y, T, a), mine, rtol=1e-5, atol=1e-6
                            )
                        ),
                        "α·T²·KL(p_t ‖ p_s) + (1 − α)·CE, batch mean",
                    )
                fail(
                    "the loss differs",
                    case=name,
                    expected=f"{ref.item():.6g}",
                    got=f"{mine.item():.6g}",
                    hint=hint,
                )
            if s.grad is None or not torch.allclose(
                s.grad, s_ref.grad, rtol=1e-4, atol=1e-7
            ):
                fail(
                    "gradients differ from lwt's",
                    case=name,
                    hint="build the loss from differentiable torch operations on the "
                    "student's logits (no .item(), .detach() or numpy)",
                )
        return (
            f"your kd_loss matches lwt.distill.kd_loss (values and gradients) in "
            f"{len(cases)} cases"
        )

    return verdict(body)


def _pair(seed: int) -> tuple[nn.Module, nn.Module]:
    """A student and a teacher with BatchNorm (and the teacher with dropout): a step
    that runs either in the wrong mode changes the numbers."""
    torch.manual_seed(seed)
    student = nn.Sequential(nn.Linear(12, 16), nn.BatchNorm1d(16), nn.ReLU(),
                            nn.Linear(16, 5))  # fmt: skip
    teacher = nn.Sequential(nn.Linear(12, 32), nn.BatchNorm1d(32), nn.ReLU(),
                            nn.Dropout(0.5), nn.Linear(32, 5))  # fmt: skip
    with torch.no_grad():
        teacher[1].running_mean.uniform_(-1, 1)
        teacher[1].running_var.uniform_(0.5, 2)
    return student.train(), teacher.train()  # the teacher arrives in training mode


def check_train_step(fn: Callable) -> bool:
    """Run ``fn(student, teacher, x, y, opt)`` for two steps and compare the losses,
    the student's parameters and the teacher's state with ``lwt.distill.Distiller``'s
    step (T = 4, α = 0.9) on copies of the same models."""

    def body() -> str:
        for seed in (0, 1):
            student, teacher = _pair(seed)
            ref_student, ref_teacher = copy.deepcopy(student), copy.deepcopy(teacher)
            before = copy.deepcopy(teacher.state_dict())
            opt = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9)
            ref_opt = torch.optim.SGD(ref_student.parameters(), lr=0.1, momentum=0.9)
            kd = distill.Distiller(ref_student, ref_teacher, T=4.0, alpha=0.9).train()
            grad_mode: list[bool] = []
            hook = teacher.register_forward_hook(
                lambda *_, seen=grad_mode: seen.append(torch.is_grad_enabled())
            )
            gen = torch.Generator().manual_seed(10 + seed)
            try:
                for step in (1, 2):
                    x = torch.randn(32, 12, generator=gen)
                    y = torch.randint(0, 5, (32,), generator=gen)
                    grad_mode.clear()
                    got = attempt("train_step", Guard(["distill.py"]), fn, student,
                                  teacher, x, y, opt)  # fmt: skip
                    ref_opt.zero_grad()
                    ref = kd.loss(kd(x), y)
                    ref.backward()
                    ref_opt.step()
                    case = f"seed {seed}, step {step}"
                    _judge_step(got, ref, case, teacher, before, grad_mode, student,
                                ref_student)  # fmt: skip
            finally:
                hook.remove()
        return "your step matches lwt.distill.Distiller's over two steps, twice"

    return verdict(body)


def _judge_step(
    got, ref, case, teacher, before, grad_mode, student, ref_student
) -> None:  # noqa: ANN001
    if not grad_mode:
        fail("the teacher never ran", case=case,
             hint="compute the teacher's logits on the same batch x")  # fmt: skip
    if any(grad_mode):
        fail("the teacher ran with gradients enabled", case=case,
             hint="wrap the teacher's forward in `with torch.no_grad():`")  # fmt: skip
    changed = [
        k for k, v in teacher.state_dict().items() if not torch.equal(v, before[k])
    ]
    if changed:
        fail("the teacher changed", case=case, got=f"{changed[:2]}",
             hint="teacher.eval(): in training mode BatchNorm updates its running "
             "statistics and dropout drops units")  # fmt: skip
    value = float(got.detach() if isinstance(got, torch.Tensor) else got)
    if abs(value - ref.item()) > 1e-5 * max(1.0, abs(ref.item())):
        fail("the loss differs", case=case, expected=f"{ref.item():.6g}",
             got=f"{value:.6g}",
             hint="student.train() and teacher.eval(); the teacher's logits on the "
             "same batch x; the loss of the first check with T = 4, "
             "α = 0.9")  # fmt: skip
    for (name, p), q in zip(student.named_parameters(), ref_student.parameters(),
                            strict=True):  # fmt: skip
        if not torch.allclose(p, q, atol=1e-6):
            fail(f"the student's {name} differs after the step", case=case,
                 hint="opt.zero_grad() before loss.backward(), then "
                 "opt.step()")  # fmt: skip


__all__ = ["check_kd_loss", "check_train_step"]
