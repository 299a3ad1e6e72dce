"""Check of notebook 05 (distillation): Hinton et al.'s loss.

Rule the check enforces (and the notebook states):
``α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1 − α)·CE(s, y)``, the KL summed over classes
and averaged over the batch; α weights the *soft* term (Distiller's docs and Keras
weight
the hard term instead); the teacher's logits are constants.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

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


__all__ = ["check_kd_loss"]
