"""Unstructured pruning (枝刈り): magnitude masks, schedules, sensitivity.

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
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import prune

from ._amounts import per_layer

PRUNABLE = (nn.Conv2d, nn.Linear)
Amounts = float | dict[str, float]


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The conv and linear layers of ``model``, by module path."""
    return {n: m for n, m in model.named_modules() if isinstance(m, PRUNABLE)}


def _check_amount(amount: float, name: str = "amount") -> None:
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"{name} must be a fraction in [0, 1), got {amount}")


def _resolve(model: nn.Module, amounts: Amounts) -> dict[str, float]:
    return per_layer(amounts, prunable_layers(model), "conv/linear layers")


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


def magnitude_mask(weight: Tensor, amount: float) -> Tensor:
    """Mask keeping the ``(1 - amount)`` fraction of largest ``|w|``.

    Zeroes exactly ``k = round(amount · n)`` entries, those of smallest ``|w|`` (ties
    by position: a stable sort), so tied weights at the threshold are not all pruned.
    """
    _check_amount(amount)
    k = round(amount * weight.numel())
    if k == 0:
        return torch.ones_like(weight)
    mask = torch.ones(weight.numel(), device=weight.device)
    mask[torch.argsort(weight.abs().flatten(), stable=True)[:k]] = 0
    return mask.view_as(weight)


def magnitude_prune(model: nn.Module, amount: Amounts) -> nn.Module:
    """Prune each layer to a target sparsity by weight magnitude (in place).

    Args:
        model: the network.
        amount: the fraction of each layer's weights to zero, in ``[0, 1)``, for
            every conv/linear layer, or a dict ``{layer path: amount}`` for some.

    Returns:
        ``model``, with ``torch.nn.utils.prune`` masks on the pruned layers.
    """
    layers = prunable_layers(model)
    for name, a in _resolve(model, amount).items():
        set_mask(layers[name], magnitude_mask(layers[name].weight.detach(), a))
    return model


def han_prune(model: nn.Module, quality: Amounts) -> nn.Module:
    """Han et al. 2015 threshold: drop ``|w| < quality * std(w)``, layer by layer.

    ``quality`` is Han's name for a threshold in standard deviations, not an amount:
    how much it removes depends on the weights (measure it with ``sparsity_report``).
    The std is that of the layer's current (effective) weights. Layers not named in a
    dict ``quality`` are left alone.
    """
    layers = prunable_layers(model)
    qualities = per_layer(
        quality, layers, "conv/linear layers", value="quality", high=None
    )
    for name in qualities:  # every layer checked before any is changed
        alive = int(torch.count_nonzero(layers[name].weight.detach()))
        if alive < 2:
            raise ValueError(f"layer {name!r} has {alive} nonzero weight(s): the "
                             "std of its weights needs at least 2")  # fmt: skip
    for name, q in qualities.items():
        w = layers[name].weight.detach()
        alive = w[w != 0]
        set_mask(layers[name], (w.abs() >= q * alive.std()).float())
    return model


def global_magnitude_prune(model: nn.Module, amount: float) -> nn.Module:
    """One magnitude threshold across all conv/linear layers, for a total sparsity.

    Exactly ``round(amount * n)`` of the ``n`` weights are pruned, the smallest
    ``|w|`` first (ties, common after sharing or quantization, broken by position),
    as ``magnitude_mask`` does for one layer. Layers with small weights lose more;
    compare ``sparsity_report`` after.
    """
    _check_amount(amount)
    layers = prunable_layers(model)
    flat = torch.cat([m.weight.detach().abs().flatten() for m in layers.values()])
    sizes = [m.weight.numel() for m in layers.values()]
    masks = magnitude_mask(flat, amount).split(sizes)
    for m, mask in zip(layers.values(), masks, strict=True):
        set_mask(m, mask.view_as(m.weight).to(m.weight.dtype))
    return model


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold every prune mask into its tensor (``prune.remove``): zeros stay, the
    ``*_orig``/``*_mask`` pairs and hooks go (weights, biases, any pruned name)."""
    for m in model.modules():
        for hook in list(m._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(m, hook._tensor_name)
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
    amount: float,
    begin: int,
    frequency: int,
    n_prunes: int,
    initial: float = 0.0,
) -> float:
    """Zhu & Gupta 2017 schedule: ``s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n Δt))^3``.

    Args:
        step: training step ``t``.
        amount: the final sparsity ``s_f``; ``initial`` is ``s_i``.
        begin: first pruning step ``t0``.
        frequency: steps between pruning events ``Δt``.
        n_prunes: number of pruning events ``n``.

    Returns:
        ``s_i`` before ``t0``, ``s_f`` after ``t0 + nΔt``, the cubic in between.
    """
    _check_amount(amount)
    _check_amount(initial, "initial")
    if frequency <= 0 or n_prunes <= 0:
        raise ValueError(
            f"frequency and n_prunes must be >= 1, got {frequency}, {n_prunes}"
        )
    progress = min(max((step - begin) / (n_prunes * frequency), 0.0), 1.0)
    return amount + (initial - amount) * (1.0 - progress) ** 3


class GradualPruning:
    """``train`` callback: every ``frequency`` steps, re-mask to the Zhu-Gupta sparsity.

    Args:
        amount: the final sparsity of every layer (float) or ``{layer: amount}``.
        begin, frequency, n_prunes, initial: see :func:`zhu_gupta_sparsity`.
    """

    def __init__(
        self,
        amount: Amounts,
        begin: int,
        frequency: int,
        n_prunes: int,
        initial: float = 0.0,
    ) -> None:
        if isinstance(amount, dict) and not amount:
            raise ValueError("amount is an empty dict: name at least one layer")
        for f in amount.values() if isinstance(amount, dict) else (amount,):
            if isinstance(f, bool) or not isinstance(f, (int, float)):
                raise TypeError(f"amount must be a fraction or a dict of them, "
                                f"got {f!r}")  # fmt: skip
            _check_amount(f)
        self.amount, self.begin, self.frequency = amount, begin, frequency
        self.n_prunes, self.initial = n_prunes, initial
        zhu_gupta_sparsity(0, 0.0, begin, frequency, n_prunes, initial)  # validates
        self.history: list[tuple[int, float]] = []

    def __call__(self, step: int, model: nn.Module) -> None:
        if step < self.begin or (step - self.begin) % self.frequency:
            return
        if step > self.begin + self.n_prunes * self.frequency:
            return
        finals = _resolve(model, self.amount)
        amounts = {
            n: zhu_gupta_sparsity(
                step, f, self.begin, self.frequency, self.n_prunes, self.initial
            )
            for n, f in finals.items()
        }
        magnitude_prune(model, amounts)
        self.history.append((step, max(amounts.values())))


def cubic_schedule(amount: Amounts, steps: int) -> list[Amounts]:
    """``steps`` sparsity targets rising to ``amount``, fast first: the Zhu & Gupta
    cubic at ``t = k`` (``t0 = 0``, ``Δt = 1``, ``n = steps``), ``k = 1 … steps``.

    ``amount`` is one fraction or ``{layer: amount}``; each step has the same form.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")

    def at(k: int, s: float) -> float:
        return zhu_gupta_sparsity(k, s, 0, 1, steps)

    if isinstance(amount, dict):
        return [{n: at(k, s) for n, s in amount.items()} for k in range(1, steps + 1)]
    return [at(k, float(amount)) for k in range(1, steps + 1)]


def iterative_prune(
    model: nn.Module,
    schedule: Sequence[Amounts],
    *,
    retrain: Callable[[nn.Module], object],
) -> nn.Module:
    """Han et al. 2015: prune to each sparsity of ``schedule``, retraining after each.

    Masks keep pruned weights at zero while ``retrain(model)`` trains the survivors
    (Han: at about 1/10 of the original rate; e.g. ``lwt.train.finetune``). Each
    step prunes to its *target* sparsity of the layer, so the schedule lists totals
    (``cubic_schedule`` makes one), not increments.

    Returns:
        ``model``, pruned and retrained in place (masks still attached: see
        :func:`make_permanent`).
    """
    for amounts in schedule:
        magnitude_prune(model, amounts)
        retrain(model)
    return model


# --------------------------------------------------------------------- sensitivity
def sensitivity_scan(
    model: nn.Module,
    amounts: Sequence[float],
    *,
    evaluate: Callable[[nn.Module], float],
    layers: Sequence[str] | None = None,
) -> dict[str, list[float]]:
    """Accuracy with one layer alone magnitude-pruned to each amount (no retraining).

    ``evaluate(model)`` returns the accuracy of a pruned copy (e.g. on a held-out
    subset, ``lambda m: lwt.train.evaluate(m, loader)``); ``model`` is not changed.

    Returns:
        ``{layer: [accuracy at each amount]}``.
    """
    names = list(layers) if layers is not None else list(prunable_layers(model))
    result = {}
    for name in names:
        accs = []
        for s in amounts:
            trial = magnitude_prune(copy.deepcopy(model), {name: s})
            accs.append(evaluate(trial))
        result[name] = accs
    return result


def amounts_from_scan(
    scan: dict[str, list[float]],
    amounts: Sequence[float],
    *,
    baseline: float,
    max_drop: float,
) -> dict[str, float]:
    """Per layer, the largest scanned amount whose accuracy stays within
    ``max_drop`` of ``baseline`` (0 if none does)."""
    return {
        name: max(
            [0.0]
            + [
                s
                for s, a in zip(amounts, accs, strict=True)
                if a >= baseline - max_drop
            ]
        )
        for name, accs in scan.items()
    }
