"""Knowledge distillation (知識蒸留): a small student learns a teacher's soft targets.

Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network":

    L = α · T² · KL( softmax(z_t / T) ‖ softmax(z_s / T) ) + (1 − α) · CE(z_s, y)

``z_s`` / ``z_t`` are the student's and teacher's logits, ``T`` the temperature that
softens both distributions (the teacher's small probabilities on wrong classes, the
"dark knowledge", become visible), ``y`` the true labels (hard targets). The gradient
of the soft term scales as ``1/T²``; multiplying by ``T²`` keeps its weight roughly
constant when ``T`` changes (Hinton et al. §2). The KL is summed over classes and
averaged over the batch (``reduction="batchmean"``, the true KL per sample).

Depends only on torch: copy this file into your project.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def _check(T: float, alpha: float) -> None:
    if not isinstance(T, (int, float)) or isinstance(T, bool) or not T > 0:
        raise ValueError(f"T (temperature) must be a number > 0, got {T!r}")
    if not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")


def soft_targets(logits: Tensor, T: float) -> Tensor:
    """``softmax(logits / T)`` over the last dimension: the softened distribution."""
    _check(T, 0.0)
    return F.softmax(logits / T, dim=-1)


def kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    T: float = 4.0,
    alpha: float = 0.9,
) -> Tensor:
    """Hinton et al.'s distillation loss (module docstring).

    Args:
        student_logits: ``(N, C)`` raw scores of the student (gradients flow here).
        teacher_logits: ``(N, C)`` raw scores of the teacher (treated as constants).
        labels: ``(N,)`` class indices (hard targets).
        T: temperature > 0 of both softmaxes.
        alpha: weight in [0, 1] of the soft term (0: plain cross-entropy).

    Returns:
        The scalar loss ``α·T²·KL(p_t ‖ p_s) + (1 − α)·CE(z_s, y)``.
    """
    _check(T, alpha)
    if student_logits.shape != teacher_logits.shape or student_logits.ndim != 2:
        raise ValueError(
            "student_logits and teacher_logits must have the same (N, C) shape, got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    if labels.shape != student_logits.shape[:1]:
        raise ValueError(
            f"labels must have shape ({student_logits.shape[0]},), "
            f"got {tuple(labels.shape)}"
        )
    log_p_s = F.log_softmax(student_logits / T, dim=1)
    log_p_t = F.log_softmax(teacher_logits.detach() / T, dim=1)
    soft = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    hard = F.cross_entropy(student_logits, labels)
    return alpha * T * T * soft + (1.0 - alpha) * hard


class Distiller(nn.Module):
    """A student trained against a frozen teacher, in any ordinary training loop.

    ``forward(x)`` returns the student's logits; in training mode it also runs the
    teacher, in eval mode and without gradients, on **the same batch** ``x`` (so both
    see the same augmentation) and keeps its logits for :meth:`loss`, which has the
    ``loss_fn(logits, y)`` signature of ``lwt.train.train``::

        kd = Distiller(student, teacher, T=4, alpha=0.9)
        opt = torch.optim.SGD(kd.student.parameters(), lr=0.1)
        train(kd, loader, epochs, opt, loss_fn=kd.loss)

    In eval mode only the student runs. ``state_dict()`` holds only the student.
    The teacher is put in eval mode (and kept there); nothing else about it changes.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        *,
        T: float = 4.0,
        alpha: float = 0.9,
    ) -> None:
        _check(T, alpha)
        if student is teacher:
            raise ValueError("student and teacher must be different modules")
        super().__init__()
        self.student, self.T, self.alpha = student, float(T), float(alpha)
        teacher.eval()  # requires_grad stays the caller's: it runs under no_grad.
        # Kept out of the module tree: not in state_dict() or parameters().
        self._teacher = [teacher]
        self.teacher_logits: Tensor | None = None

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001, ANN202
        self.teacher._apply(fn)  # .to(device) / .cuda() / .float() move both
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True) -> Distiller:
        """Only the student changes mode: the teacher stays in eval mode."""
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            with torch.no_grad():
                self.teacher_logits = self.teacher(x)
        else:
            self.teacher_logits = None
        return self.student(x)

    def loss(self, student_logits: Tensor, labels: Tensor) -> Tensor:
        """:func:`kd_loss` against the teacher logits of the last training forward."""
        if self.teacher_logits is None:
            raise RuntimeError("call the Distiller in training mode before loss()")
        return kd_loss(student_logits, self.teacher_logits, labels, self.T, self.alpha)
