"""Neuron pruning (活性化値が低いニューロン): remove units that barely fire.

A hidden unit ``j`` whose ReLU output is almost always zero passes almost nothing to
the next layer. Hu et al. 2016 ("Network Trimming") measure this on a calibration
set as the *average percentage of zeros*

    APoZ_j = (1 / (N·M)) Σ_n Σ_m [ReLU(z_{n,j,m}) = 0]

over ``N`` examples and the ``M`` positions of the unit (``M = H·W`` for a conv
channel, 1 for a Linear unit), and remove the units of highest APoZ. A second
statistic is the mean activation ``μ_j = (1 / (N·M)) Σ_n Σ_m ReLU(z_{n,j,m})``.
Removing unit ``j`` deletes row ``j`` of its layer (and entry ``j`` of a BatchNorm)
and column ``j`` of the next layer: a smaller *dense* network, cut by
``structured.prune_channels`` (the same surgery and checks as filter pruning).

Criteria (``importance``; a higher score is kept): ``"apoz"`` (``1 − APoZ``),
``"mean"`` (``μ``), ``"l1"`` (L1 norm of the unit's incoming weights, Li et al.'s
filter score) and ``"random"`` (the control).

Reference: Hu, Peng, Tai, Tang. Network Trimming: A Data-Driven Neuron Pruning
Approach towards Efficient Deep Architectures. arXiv:1607.03250, 2016.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ._amounts import per_layer
from .structured import keep_after_removing, l1_norms, prune_channels
from .surgery import original_width, submodule

CRITERIA = ("apoz", "mean", "l1", "random")
# (producer, consumer) or (producer, consumer, BatchNorm between them)
Chain = tuple[str, str] | tuple[str, str, str]


@dataclass
class ActivationStats:
    """Per-unit statistics of ``ReLU(z)`` over a calibration set.

    Attributes:
        apoz: ``(C,)`` fraction of zero activations of each unit, in ``[0, 1]``.
        mean: ``(C,)`` mean activation of each unit.
        count: activations seen per unit (examples × positions).
    """

    apoz: Tensor
    mean: Tensor
    count: int


@torch.no_grad()
def activation_stats(
    model: nn.Module, layers: Sequence[str], batches: Iterable
) -> dict[str, ActivationStats]:
    """APoZ and mean activation of every output unit of ``layers``.

    The activation is ``ReLU`` of the named module's output ``z`` (``(N, C)`` or
    ``(N, C, H, W)``): name the layer itself, or the BatchNorm after it when there
    is one. ``batches`` yields ``(x, y)`` pairs (or bare inputs); the model runs in
    eval mode and is left in the mode it was in.

    Returns:
        ``{layer: ActivationStats}``.
    """
    modules = {p: submodule(model, p, "layer") for p in layers}
    zeros: dict[str, Tensor] = {}
    sums: dict[str, Tensor] = {}
    counts = dict.fromkeys(modules, 0)

    def hook(path: str) -> Callable:
        def record(_m: nn.Module, _inp: tuple, out: Tensor) -> None:
            a = torch.relu(out.detach()).double()
            dims = [0, *range(2, a.dim())]  # all but the unit axis
            zeros[path] = zeros.get(path, 0) + (a == 0).sum(dims)
            sums[path] = sums.get(path, 0) + a.sum(dims)
            counts[path] += a.numel() // a.shape[1]

        return record

    was_training = model.training
    handles = [m.register_forward_hook(hook(p)) for p, m in modules.items()]
    try:
        model.eval()
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(x.to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if any(n == 0 for n in counts.values()):
        raise ValueError("batches yielded no examples (or a layer never ran)")
    return {
        p: ActivationStats(
            (zeros[p] / counts[p]).float(), (sums[p] / counts[p]).float(), counts[p]
        )
        for p in modules
    }


def importance(
    layer: nn.Module,
    criterion: str,
    stats: ActivationStats | None = None,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``(C,)`` score of each output unit of ``layer`` under ``criterion`` (higher is
    kept): ``1 − APoZ``, mean activation, incoming-weight L1 norm, or random."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    n = layer.weight.shape[0]
    if criterion == "l1":
        return l1_norms(layer)
    if criterion == "random":
        return torch.rand(n, generator=generator)
    if stats is None or len(stats.apoz) != n:
        raise ValueError(f"criterion {criterion!r} needs the layer's {n} unit stats")
    return 1 - stats.apoz if criterion == "apoz" else stats.mean


def _chains(
    model: nn.Module, chains: Sequence[Chain]
) -> list[tuple[str, str, str | None]]:
    out = []
    for c in chains:
        if not isinstance(c, (tuple, list)) or len(c) not in (2, 3):
            raise TypeError(f"chains hold (producer, consumer[, bn]) tuples, got {c!r}")
        producer, consumer, bn = (*c, None) if len(c) == 2 else c
        submodule(model, producer, "producer")
        out.append((producer, consumer, bn))
    return out


def neurons_to_keep(
    model: nn.Module,
    chains: Sequence[Chain],
    amount: float | Mapping[str, float],
    *,
    batches: Iterable | None = None,
    criterion: str = "apoz",
    seed: int = 0,
) -> dict[str, Tensor]:
    """The units :func:`prune_neurons` keeps (model untouched): remove the ``amount``
    fraction of each producer's units with the lowest ``importance``
    (``structured.keep_after_removing``: ties keep the lower index).

    Args:
        model: the network (not changed).
        chains: ``(producer, consumer)`` or ``(producer, consumer, bn)`` per layer
            whose units are removed, e.g. ``[("fc1", "fc2"), ("fc2", "fc3")]``.
        amount: fraction of each producer's original units removed (its width before
            its first structured prune), in ``[0, 1)``: one for every producer, or
            ``{producer: fraction}``.
        batches: calibration batches (needed by ``"apoz"`` and ``"mean"``).
        criterion: one of ``CRITERIA``.
        seed: the ``"random"`` criterion's seed.

    Returns:
        ``{producer: sorted indices of the kept units}`` (indices before pruning).
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    resolved = _chains(model, chains)
    amounts = per_layer(amount, [p for p, _, _ in resolved], "producers of chains")
    stats: dict[str, ActivationStats] = {}
    if criterion in ("apoz", "mean"):
        if batches is None:
            raise ValueError(f"criterion {criterion!r} needs calibration batches")
        where = {p: bn or p for p, _, bn in resolved}
        measured = activation_stats(model, list(where.values()), batches)
        stats = {p: measured[w] for p, w in where.items()}
    gen = torch.Generator().manual_seed(seed)
    kept = {}
    for producer, _, _ in resolved:
        layer = model.get_submodule(producer)
        score = importance(layer, criterion, stats.get(producer), generator=gen)
        try:
            kept[producer] = keep_after_removing(
                score.cpu(), amounts.get(producer, 0.0),
                original=original_width(layer), what="units")  # fmt: skip
        except ValueError as err:
            raise ValueError(f"{producer}: {err}") from err
    return kept


def prune_neurons(
    model: nn.Module,
    chains: Sequence[Chain],
    amount: float | Mapping[str, float],
    *,
    batches: Iterable | None = None,
    criterion: str = "apoz",
    seed: int = 0,
) -> nn.Module:
    """One shot: remove the units :func:`neurons_to_keep` does not keep (same
    arguments), with ``prune_channels``' surgery.

    Returns:
        ``model``, changed in place (only after every check passed).
    """
    kept = neurons_to_keep(model, chains, amount, batches=batches,
                           criterion=criterion, seed=seed)  # fmt: skip
    plan = [(p, c, bn, kept[p]) for p, c, bn in _chains(model, chains)]
    return prune_channels(model, plan)


def gradual_prune_neurons(
    model: nn.Module,
    chains: Sequence[Chain],
    schedule: Sequence[float | Mapping[str, float]],
    *,
    batches: Iterable | None,
    retrain: Callable[[nn.Module], object],
    criterion: str = "apoz",
    seed: int = 0,
) -> list[dict[str, int]]:
    """Prune a few units → retrain → re-measure → repeat (Hu et al. §3, iterative).

    ``schedule`` lists *total* fractions of each producer's original units removed
    after each step (e.g. ``[0.3, 0.5, 0.6]``); each step re-measures the statistics
    of the retrained network on ``batches`` and removes units to reach its total.

    Returns:
        The width of each producer after each step.
    """
    resolved = _chains(model, chains)
    widths0 = {p: original_width(model.get_submodule(p)) for p, _, _ in resolved}
    targets, last = [], dict(widths0)  # the whole schedule is checked first
    for step, amounts in enumerate(schedule):
        total = per_layer(amounts, list(widths0), "producers of chains")
        width = {p: n - round(total.get(p, 0.0) * n) for p, n in widths0.items()}
        width = {p: w if p in total else last[p] for p, w in width.items()}
        grown = [p for p in width if width[p] > last[p]]
        if grown:
            raise ValueError(
                f"schedule step {step} regrows {grown[0]}: totals only rise"
            )
        targets.append(width)
        last = width
    history = []
    for step, width in enumerate(targets):
        amounts = {p: 1 - width[p] / widths0[p] for p in width}  # of the original
        prune_neurons(model, chains, amounts, batches=batches,
                      criterion=criterion, seed=seed + step)  # fmt: skip
        retrain(model)
        history.append({p: model.get_submodule(p).weight.shape[0] for p in widths0})
    return history
