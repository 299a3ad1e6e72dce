"""Unstructured pruning (枝刈り): magnitude masks, schedules, sensitivity, sparse files.

Masks are standard ``torch.nn.utils.prune`` masks: a pruned layer holds ``weight_orig``
and a ``weight_mask`` buffer, and computes ``weight = weight_orig * weight_mask`` before
each forward pass. Every function here prunes a layer to a *target* sparsity of the
layer (not "a further fraction of what is left", as repeated ``prune.l1_unstructured``
calls do), so schedules can call it again and again. Pruned weights stay pruned: a
target below a layer's current sparsity leaves its mask as it is.

References:
    Han, Pool, Tran, Dally. Learning both Weights and Connections for Efficient Neural
    Networks. NeurIPS 2015.  Zhu, Gupta. To prune, or not to prune. arXiv:1710.01878.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import prune

from . import train as training

PRUNABLE = (nn.Conv2d, nn.Linear)
Amounts = float | dict[str, float]


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The conv and linear layers of ``model``, by module path."""
    return {n: m for n, m in model.named_modules() if isinstance(m, PRUNABLE)}


def _check_amount(amount: float, name: str = "amount") -> None:
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"{name} must be a sparsity in [0, 1), got {amount}")


def _resolve(model: nn.Module, amounts: Amounts) -> dict[str, float]:
    layers = prunable_layers(model)
    if isinstance(amounts, (int, float)):
        amounts = {n: float(amounts) for n in layers}
    unknown = sorted(set(amounts) - set(layers))
    if unknown:
        raise ValueError(
            f"layers {unknown} are not conv/linear layers of the model; "
            f"prunable: {sorted(layers)}"
        )
    for name, a in amounts.items():
        _check_amount(a, f"amount of {name}")
    return dict(amounts)


def set_mask(module: nn.Module, mask: Tensor) -> None:
    """Mask ``module.weight`` with ``mask`` AND its current mask: pruned stays pruned.

    ``weight`` is recomputed at once (torch would only do so at the next forward).
    """
    if not isinstance(module, PRUNABLE):
        raise TypeError(f"can only prune Conv2d/Linear, got {type(module).__name__}")
    if prune.is_pruned(module):
        module.weight_mask.mul_(mask.to(module.weight_mask))
        module.weight = module.weight_orig * module.weight_mask
    else:
        prune.custom_from_mask(module, "weight", mask)


def magnitude_mask(weight: Tensor, sparsity: float) -> Tensor:
    """Mask keeping the ``(1 - sparsity)`` fraction of largest ``|w|``.

    ``mask = |w| > t`` with ``t`` the ``round(sparsity * n)``-th smallest ``|w|``.
    """
    _check_amount(sparsity, "sparsity")
    k = round(sparsity * weight.numel())
    if k == 0:
        return torch.ones_like(weight)
    mask = torch.ones(weight.numel(), device=weight.device)
    mask[torch.argsort(weight.abs().flatten(), stable=True)[:k]] = 0
    return mask.view_as(weight)


def magnitude_prune(model: nn.Module, amounts: Amounts) -> nn.Module:
    """Prune each layer to a target sparsity by weight magnitude (in place).

    Args:
        model: the network.
        amounts: one sparsity in ``[0, 1)`` for every conv/linear layer, or a dict
            ``{layer path: sparsity}`` for some of them.

    Returns:
        ``model``, with ``torch.nn.utils.prune`` masks on the pruned layers.
    """
    layers = prunable_layers(model)
    for name, amount in _resolve(model, amounts).items():
        set_mask(layers[name], magnitude_mask(layers[name].weight.detach(), amount))
    return model


def han_prune(model: nn.Module, quality: Amounts) -> nn.Module:
    """Han et al. 2015 threshold: drop ``|w| < quality * std(w)``, layer by layer.

    The std is that of the layer's current (effective) weights. Layers not named in a
    dict ``quality`` are left alone.
    """
    layers = prunable_layers(model)
    if isinstance(quality, (int, float)):
        quality = {n: float(quality) for n in layers}
    for name, q in quality.items():
        if name not in layers or q < 0:
            raise ValueError(
                f"quality needs known layers and values >= 0, got {name}={q}"
            )
        w = layers[name].weight.detach()
        alive = w[w != 0]
        set_mask(layers[name], (w.abs() >= q * alive.std()).float())
    return model


def global_magnitude_prune(model: nn.Module, amount: float) -> nn.Module:
    """One magnitude threshold across all conv/linear layers, for a total sparsity.

    Layers with small weights lose more; compare ``sparsity_report`` after.
    """
    _check_amount(amount)
    layers = prunable_layers(model)
    flat = torch.cat([m.weight.detach().abs().flatten() for m in layers.values()])
    k = round(amount * flat.numel())
    threshold = flat.kthvalue(k).values if k > 0 else flat.min() - 1
    for m in layers.values():
        set_mask(m, (m.weight.detach().abs() > threshold).float())
    return model


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold every mask into its weight (``prune.remove``): zeros stay, hooks go."""
    for m in prunable_layers(model).values():
        if prune.is_pruned(m):
            prune.remove(m, "weight")
    return model


def sparsity_report(model: nn.Module) -> list[dict[str, float | int | str]]:
    """Per-layer ``{layer, params, nonzeros, kept}`` of the weights, and a total."""
    rows = []
    for name, m in prunable_layers(model).items():
        w = m.weight.detach()
        rows.append(
            {
                "layer": name,
                "params": w.numel(),
                "nonzeros": int(torch.count_nonzero(w)),
            }
        )
    total = {
        "layer": "total",
        "params": sum(r["params"] for r in rows),
        "nonzeros": sum(r["nonzeros"] for r in rows),
    }
    for r in [*rows, total]:
        r["kept"] = r["nonzeros"] / r["params"]
    return [*rows, total]


# ------------------------------------------------------------------ gradual pruning
def zhu_gupta_sparsity(
    step: int,
    final: float,
    begin: int,
    frequency: int,
    n_prunes: int,
    initial: float = 0.0,
) -> float:
    """Zhu & Gupta 2017 schedule: ``s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n Δt))^3``.

    Args:
        step: training step ``t``.
        final: final sparsity ``s_f``; ``initial`` is ``s_i``.
        begin: first pruning step ``t0``.
        frequency: steps between pruning events ``Δt``.
        n_prunes: number of pruning events ``n``.

    Returns:
        ``s_i`` before ``t0``, ``s_f`` after ``t0 + nΔt``, the cubic in between.
    """
    _check_amount(final, "final")
    _check_amount(initial, "initial")
    if frequency <= 0 or n_prunes <= 0:
        raise ValueError(
            f"frequency and n_prunes must be >= 1, got {frequency}, {n_prunes}"
        )
    progress = min(max((step - begin) / (n_prunes * frequency), 0.0), 1.0)
    return final + (initial - final) * (1.0 - progress) ** 3


class GradualPruning:
    """``train`` callback: every ``frequency`` steps, re-mask to the Zhu-Gupta sparsity.

    Args:
        final: target sparsity per layer (float) or ``{layer: sparsity}``.
        begin, frequency, n_prunes, initial: see :func:`zhu_gupta_sparsity`.
    """

    def __init__(
        self,
        final: Amounts,
        begin: int,
        frequency: int,
        n_prunes: int,
        initial: float = 0.0,
    ) -> None:
        self.final, self.begin, self.frequency = final, begin, frequency
        self.n_prunes, self.initial = n_prunes, initial
        zhu_gupta_sparsity(0, 0.0, begin, frequency, n_prunes, initial)  # validates
        self.history: list[tuple[int, float]] = []

    def __call__(self, step: int, model: nn.Module) -> None:
        if step < self.begin or (step - self.begin) % self.frequency:
            return
        if step > self.begin + self.n_prunes * self.frequency:
            return
        finals = _resolve(model, self.final)
        amounts = {
            n: zhu_gupta_sparsity(
                step, f, self.begin, self.frequency, self.n_prunes, self.initial
            )
            for n, f in finals.items()
        }
        magnitude_prune(model, amounts)
        self.history.append((step, max(amounts.values())))


def iterative_prune(
    model: nn.Module,
    loader: Sequence,
    schedule: Sequence[Amounts],
    epochs_per_step: int,
    lr: float,
    weight_decay: float = 0.0,
    anneal: bool = False,
    quiet: bool = True,
) -> list[dict[str, float]]:
    """Han et al. 2015: prune to each sparsity of ``schedule``, then retrain.

    Retraining uses SGD with momentum at ``lr`` (Han: 1/10 of the original rate),
    fixed, or with ``anneal=True`` cosine-annealed to 0 within each step (as in
    learning-rate rewinding, Renda et al. 2020). Masks keep pruned weights at zero.
    Returns the training history.
    """
    if epochs_per_step < 0 or lr <= 0:
        raise ValueError(
            f"need epochs_per_step >= 0 and lr > 0, got {epochs_per_step}, {lr}"
        )
    history = []
    for amounts in schedule:
        magnitude_prune(model, amounts)
        opt = torch.optim.SGD(
            model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay
        )
        steps = max(epochs_per_step * len(loader), 1)
        sched = (
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if anneal else None
        )
        history += training.train(
            model, loader, epochs_per_step, opt, sched, quiet=quiet
        )
    return history


# --------------------------------------------------------------------- sensitivity
def sensitivity_scan(
    model: nn.Module,
    loader: Iterable,
    sparsities: Sequence[float],
    layers: Sequence[str] | None = None,
) -> dict[str, list[float]]:
    """Accuracy with one layer alone magnitude-pruned to each sparsity (no retraining).

    Returns:
        ``{layer: [accuracy at each sparsity]}``.
    """
    names = list(layers) if layers is not None else list(prunable_layers(model))
    result = {}
    for name in names:
        accs = []
        for s in sparsities:
            trial = magnitude_prune(copy.deepcopy(model), {name: s})
            accs.append(training.evaluate(trial, loader))
        result[name] = accs
    return result


def sparsities_from_scan(
    scan: dict[str, list[float]],
    sparsities: Sequence[float],
    baseline: float,
    max_drop: float,
) -> dict[str, float]:
    """Per layer, the largest scanned sparsity whose accuracy stays within
    ``max_drop`` of ``baseline`` (0 if none does)."""
    return {
        name: max(
            [0.0]
            + [
                s
                for s, a in zip(sparsities, accs, strict=True)
                if a >= baseline - max_drop
            ]
        )
        for name, accs in scan.items()
    }
