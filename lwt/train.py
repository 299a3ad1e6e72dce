"""Seeded, device-agnostic training and evaluation loops.

``train`` takes an optional per-step ``callback(step, model)`` run after every
optimizer step: later lessons hook pruning schedules (re-masking, gradual sparsity)
and quantization-aware training into it without touching the loop.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

Batches = Iterable[tuple[Tensor, Tensor]]
StepCallback = Callable[[int, nn.Module], None]


def is_quick() -> bool:
    """True when ``LWT_QUICK=1``: notebooks and tests shrink their budgets."""
    return os.environ.get("LWT_QUICK", "0") not in ("", "0", "false", "False")


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) for reproducible runs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_device() -> torch.device:
    """CUDA if present, else Apple MPS if present, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Batches,
    device: torch.device | str | None = None,
    quiet: bool = True,
) -> float:
    """Top-1 accuracy of ``model`` over ``loader``, as a fraction in ``[0, 1]``.

    The model is put in eval mode (and left there).
    """
    device = (
        torch.device(device)
        if device is not None
        else next((p.device for p in model.parameters()), torch.device("cpu"))
    )
    model.eval()
    correct = total = 0
    for x, y in tqdm(loader, desc="eval", leave=False, disable=quiet):
        pred = model(x.to(device)).argmax(1)
        correct += (pred.cpu() == y).sum().item()
        total += len(y)
    if total == 0:
        raise ValueError("loader yielded no examples")
    return correct / total


def train(
    model: nn.Module,
    loader: Batches,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    test_loader: Batches | None = None,
    callback: StepCallback | None = None,
    device: torch.device | str | None = None,
    quiet: bool = False,
) -> list[dict[str, float]]:
    """Train ``model`` for ``epochs`` passes over ``loader``.

    Args:
        model: the network (moved to ``device``).
        loader: training batches ``(x, y)``.
        epochs: number of passes (>= 0).
        optimizer: optimizer over the model's parameters.
        scheduler: stepped after every batch (per-step schedules such as OneCycle).
        loss_fn: ``loss_fn(logits, y)``; default cross-entropy.
        test_loader: if given, test accuracy is logged after each epoch.
        callback: ``callback(step, model)`` after each optimizer step (step from 1).
        device: where to train; default :func:`default_device` (CUDA, else MPS,
            else the CPU). The one device rule of the loops: ``train`` and
            ``finetune`` move the model to ``device`` and leave it there; ``evaluate``
            runs where the model's parameters are. Pass ``device="cpu"`` to keep a
            model on the CPU on a machine with a GPU.
        quiet: hide progress bars.

    Returns:
        One dict per epoch: ``epoch, loss, train_acc, seconds`` (+ ``test_acc``).
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    device = torch.device(device) if device is not None else default_device()
    loss_fn = loss_fn or nn.functional.cross_entropy
    model.to(device)
    history, step = [], 0
    for epoch in range(1, epochs + 1):
        model.train()
        start, loss_sum, correct, seen = time.perf_counter(), 0.0, 0, 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{epochs}", leave=False, disable=quiet)
        for x, y in bar:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss = loss_fn(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step += 1
            if callback is not None:
                callback(step, model)
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}")
        row = {
            "epoch": epoch,
            "loss": loss_sum / max(seen, 1),
            "train_acc": correct / max(seen, 1),
            "seconds": time.perf_counter() - start,
        }
        if test_loader is not None:
            row["test_acc"] = evaluate(model, test_loader, device)
        history.append(row)
        if not quiet:
            print(
                " ".join(
                    f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in row.items()
                ),
                flush=True,
            )
    return history


def sgd_onecycle(
    model: nn.Module,
    steps: int,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    pct_start: float = 0.15,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD (Nesterov) with a one-cycle schedule (Smith & Topin 2019) over ``steps``.

    The rate rises from ``lr/25`` to ``lr`` over ``pct_start`` of the steps, then
    anneals (cosine) towards ``lr/25e4``.
    """
    if steps <= 0 or lr <= 0:
        raise ValueError(f"steps and lr must be positive, got steps={steps}, lr={lr}")
    opt = torch.optim.SGD(
        model.parameters(),
        lr=lr,
        momentum=momentum,
        nesterov=True,
        weight_decay=weight_decay,
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=steps, pct_start=pct_start
    )
    return opt, sched


def onecycle(
    model: nn.Module,
    loader: Batches,
    epochs: int,
    *,
    lr: float,
    weight_decay: float,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    quiet: bool = True,
) -> int:
    """Train every parameter of ``model`` with SGD-Nesterov on a one-cycle schedule
    peaking at ``lr`` (:func:`sgd_onecycle`; from scratch, or after pruning or
    factorization); ``loss_fn`` as in :func:`train`. Returns the epochs run."""
    opt, sched = sgd_onecycle(model, epochs * len(loader), lr, weight_decay)
    return len(train(model, loader, epochs, opt, sched, loss_fn, quiet=quiet))


def finetune(
    model: nn.Module,
    loader: Batches,
    *,
    epochs: int,
    lr: float,
    weight_decay: float = 0.0,
    anneal: bool = True,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    device: torch.device | str | None = None,
    quiet: bool = True,
) -> list[dict[str, float]]:
    """Fine-tune a trained model: SGD (momentum 0.9) at ``lr``, cosine-annealed to 0
    over all steps (``anneal``) or constant; ``loss_fn`` as in :func:`train` (e.g. a
    ``Distiller``'s loss); returns :func:`train`'s history. ``device`` as in
    :func:`train`: the model is moved there and left there.

    The retraining step of pruning (Han et al. 2015: a fraction of the original rate)
    and of quantization-aware training both use it.
    """
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    opt = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay
    )
    steps = max(epochs * len(loader), 1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if anneal else None
    return train(model, loader, epochs, opt, sched, loss_fn, device=device, quiet=quiet)
