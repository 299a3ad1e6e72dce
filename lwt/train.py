"""Seeded, device-agnostic training and evaluation loops.

``train`` takes an optional per-step ``callback(step, model)`` run after every
optimizer step: later lessons hook pruning schedules (re-masking, gradual sparsity)
and quantization-aware training into it without touching the loop.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterable
from pathlib import Path

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
    precision: str = "fp32",
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
        precision: ``"fp32"``, or ``"bf16"``: the forward pass under bfloat16
            autocast (fp32 weights and optimizer; ~2x faster on CPUs with AMX).

    Returns:
        One dict per epoch: ``epoch, loss, train_acc, seconds`` (+ ``test_acc``).
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
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
            with torch.autocast(device.type, torch.bfloat16, precision == "bf16"):
                logits = model(x)
            logits = logits.float()
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


def adamw_cosine(
    model: nn.Module, steps: int, *, lr: float, weight_decay: float, warmup: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW (Loshchilov & Hutter 2019) with a linear warm-up over ``warmup`` steps and
    a cosine decay to 0 over the rest, the usual recipe of vision transformers.

    ``lr_t = lr * t / warmup`` for ``t < warmup``, then
    ``lr * (1 + cos(pi * (t - warmup) / (steps - warmup))) / 2``. Weight decay applies
    to matrices and conv kernels only (not to biases, norms or position embeddings).
    """
    if steps <= 0 or lr <= 0 or not 0 <= warmup < steps:
        raise ValueError(f"need steps > 0, lr > 0 and 0 <= warmup < steps, got "
                         f"steps={steps}, lr={lr}, warmup={warmup}")  # fmt: skip
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and n != "pos"]
    rest = [p for n, p in model.named_parameters() if p.ndim < 2 or n == "pos"]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay},
         {"params": rest, "weight_decay": 0.0}], lr=lr)  # fmt: skip

    def factor(t: int) -> float:
        if t < warmup:
            return (t + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (t - warmup) / (steps - warmup)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def train_resumable(
    model: nn.Module,
    loader: Batches,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    *,
    state: str | os.PathLike | None,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    precision: str = "fp32",
    device: torch.device | str | None = None,
    quiet: bool = True,
) -> list[dict[str, float]]:
    """:func:`train` one epoch at a time, saving everything a restart needs to
    ``state`` after each epoch (model, optimizer, schedule, RNG, history; written to
    a temporary file, then renamed), and resuming from it when it exists. The
    loader's epoch counter (``loader.epoch``, which seeds its order and
    augmentation) is set to the epochs done, so a resumed run draws what an
    uninterrupted one would. ``state=None``: no file, one uninterrupted run."""
    history: list[dict[str, float]] = []
    path = Path(state) if state is not None else None
    if path is not None and path.exists():
        saved = torch.load(path, weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["rng"])
        history = saved["history"]
        if not quiet:
            print(f"resumed from {path} after epoch {len(history)}", flush=True)
    for epoch in range(len(history) + 1, epochs + 1):
        if hasattr(loader, "epoch"):
            loader.epoch = epoch - 1
        row = train(model, loader, 1, optimizer, scheduler, loss_fn, device=device,
                    quiet=True, precision=precision)[0]  # fmt: skip
        history.append({**row, "epoch": epoch})
        if not quiet:
            print(f"epoch {epoch}/{epochs} loss={row['loss']:.4f} "
                  f"train_acc={row['train_acc']:.4f} {row['seconds']:.0f}s",
                  flush=True)  # fmt: skip
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            saved = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler else None,
                "rng": torch.get_rng_state(),
                "history": history,
            }
            torch.save(saved, tmp)
            tmp.replace(path)
    return history
