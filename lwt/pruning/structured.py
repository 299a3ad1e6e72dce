"""Structured pruning (構造的枝刈り): remove whole filters, for real.

Li et al. 2017 rank the filters of a layer by their L1 norm

    s_j = Σ_{c,u,v} |W[j, c, u, v]|        (a Linear layer: s_j = Σ_c |W[j, c]|)

and remove the ``round(amount · C_out)`` smallest. Removing output channel ``j`` of
the *producer* also removes channel ``j`` of the BatchNorm after it and input
channel ``j`` of the *consumer* (the next conv, or the Linear after a flatten, where
channel ``j`` is the ``H·W`` consecutive inputs ``j·H·W … j·H·W + H·W − 1``). The
result is a smaller *dense* model: fewer parameters, fewer MACs, faster on ordinary
dense kernels. Surviving weights are copied exactly, on the layer's device and dtype.

API:

- ``l1_norms(layer)``: the scores ``s_j``.
- ``filters_to_keep(layer, amount, *, multiple_of=1)``: sorted indices of the filters
  that survive.
- ``keep_outputs`` / ``keep_inputs`` / ``keep_bn`` (in ``surgery``): copies of one
  layer with only some output channels / input channels / normalised channels.
- ``prune_filters(model, producer, consumer, amount, *, bn=None, multiple_of=1)``:
  prune one producer -> (BatchNorm) -> consumer chain in place.
- ``prune_resnet_blocks(model, amount, *, multiple_of=1)``: prune the inner channels
  of every torchvision ``BasicBlock`` and ``Bottleneck``.
- ``prune_channels(model, chains)``: keep channels chosen by any other criterion
  (``neurons`` uses it for activation statistics).

Channels can be coupled: a residual add needs both operands to keep the same
channels, a ``torch.cat`` shifts them, a depthwise conv ties its outputs to its
inputs (Fang et al. 2023, DepGraph). Before changing anything, ``prune_filters``
traces the model with ``torch.fx`` (``coupling.channel_path``) and checks that
``consumer`` reads the producer's output through a direct chain — an optional
``bn``, then per-channel ops (activations, pooling, dropout), optionally
``flatten(1)`` into a Linear — and nothing else. Any coupling (residual add,
concatenation, grouped/depthwise consumer, several consumers, the output returned
by ``forward``) is refused with an error naming it and the fx node; use
Torch-Pruning for those architectures. Every error is raised before the model is
touched.

ResNets: only a block's inner channels are pruned (``conv1`` -> ``bn1`` -> ``conv2``,
and in a Bottleneck also ``conv2`` -> ``bn2`` -> ``conv3``), so the block's output
and the residual add keep their width — Li et al.'s ResNet-56/110 "-A/-B" variants
prune the first layer of each block in the same way. In a Bottleneck, ``conv2``'s
norms are computed after its inputs were pruned (Li et al.'s "greedy" variant,
Sec. 3.2), exactly as two successive ``prune_filters`` calls would do.

References: Li, Kadav, Durdanovic, Samet, Graf. Pruning Filters for Efficient
ConvNets. ICLR 2017. Fang, Ma, Song, Mi, Wang. DepGraph: Towards Any Structural
Pruning. CVPR 2023.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from numbers import Real

import torch
from torch import Tensor, fx, nn

from . import coupling
from ._amounts import per_layer
from .surgery import (
    Layer,
    check_keep,
    check_layer,
    keep_bn,
    keep_inputs,
    keep_outputs,
    original_width,
    submodule,
)


def _check_multiple_of(multiple_of: int) -> None:
    if isinstance(multiple_of, bool) or not isinstance(multiple_of, int):
        raise TypeError(f"multiple_of must be an int >= 1, got {multiple_of!r}")
    if multiple_of < 1:
        raise ValueError(f"multiple_of must be >= 1, got {multiple_of}")


def l1_norms(layer: Layer) -> Tensor:
    """``(C_out,)`` L1 norm ``s_j = Σ |W[j, ...]|`` of each filter (conv) or neuron
    (linear) of ``layer``."""
    check_layer(layer, "layer")
    return layer.weight.detach().abs().flatten(1).sum(1)


def keep_after_removing(
    scores: Tensor,
    amount: float,
    *,
    original: int | None = None,
    multiple_of: int = 1,
    what: str = "filters",
) -> Tensor:
    """Sorted indices of the units that survive removing the ``amount`` fraction of
    the ``original`` units (default: all ``n = len(scores)``), lowest score first
    (filter L1 norms here, activation statistics in ``neurons``).

    ``k = original − round(amount · original)`` units are kept (with ``multiple_of =
    m``: rounded to the nearest multiple of ``m``, at least ``m``), those with the
    largest scores (ties keep the lower index). ``amount`` is a fraction of the
    *original* width, as in unstructured pruning: a unit removed stays removed, so if
    only ``n <= k`` are left, all ``n`` are kept."""
    if isinstance(amount, bool) or not isinstance(amount, Real):
        raise TypeError(f"amount must be a fraction in [0, 1), got {amount!r}")
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount must be a fraction of {what} in [0, 1), got {amount}")
    _check_multiple_of(multiple_of)
    n = len(scores)
    total = n if original is None else original
    if total < n:
        raise ValueError(f"original must be >= the {n} {what} left, got {original}")
    keep = total - round(amount * total)
    if multiple_of > 1:
        keep = min(total, max(multiple_of, multiple_of * round(keep / multiple_of)))
    if keep < 1:
        raise ValueError(
            f"amount={amount} would remove all {total} {what}; keep at least 1"
        )
    order = torch.argsort(scores, descending=True, stable=True)
    return order[: min(keep, n)].sort().values


def filters_to_keep(layer: Layer, amount: float, *, multiple_of: int = 1) -> Tensor:
    """Sorted indices of the filters that survive removing the smallest-L1 ones.

    ``k = C_0 − round(amount · C_0)`` filters are kept, ``C_0`` the layer's
    original width (``surgery.original_width``): those with the largest ``s_j``
    (``l1_norms``; ties keep the lower index; ``keep_after_removing``). With
    ``multiple_of = m`` the count is rounded to the nearest multiple of ``m`` (at
    least ``m``, at most ``C_out``): CPU kernels vectorise over 8 or 16 channels, so
    widths like 19 or 38 waste part of every vector.

    Args:
        layer: a Conv2d (``groups=1``) or Linear layer.
        amount: fraction of the original filters removed, in ``[0, 1)``.
        multiple_of: round the number kept to a multiple of this (``>= 1``).

    Returns:
        ``(k,)`` int64 indices, ascending, on the layer's device.
    """
    check_layer(layer, "layer")
    return keep_after_removing(l1_norms(layer), amount, multiple_of=multiple_of,
                               original=original_width(layer))  # fmt: skip


def _plan(
    model: nn.Module,
    graph: fx.Graph | None,
    producer: str,
    consumer: str,
    select: Callable[[Layer], Tensor],
    bn: str | None,
    planned: dict[str, nn.Module],
) -> tuple[Tensor, dict[str, nn.Module]]:
    """Check one producer → consumer prune and build its new layers (model untouched).

    ``select(producer_layer)`` returns the sorted output channels to keep.
    ``planned`` holds replacements already decided (a Bottleneck's conv2 after its
    inputs were pruned); they stand in for the model's layers.
    """

    def current(path: str, what: str) -> nn.Module:
        return planned[path] if path in planned else submodule(model, path, what)

    prod, cons = current(producer, "producer"), current(consumer, "consumer")
    check_layer(prod, f"producer {producer!r}")
    check_layer(cons, f"consumer {consumer!r}", grouped_ok=True)
    norm = None
    if bn is not None:
        norm = submodule(model, bn, "bn")
        if type(norm) not in (nn.BatchNorm1d, nn.BatchNorm2d):
            raise TypeError(
                f"bn {bn!r} must be BatchNorm1d or BatchNorm2d, "
                f"got {type(norm).__name__}"
            )
    try:
        keep = select(prod)
    except ValueError as err:
        raise ValueError(f"{producer}: {err}") from err

    path = coupling.channel_path(model, producer, graph=graph)
    through = f" (through {', '.join(path.via)})" if path.via else ""
    if path.consumer != consumer:
        raise ValueError(
            f"{producer} and {consumer} are not directly connected: {producer}'s "
            f"output feeds {path.consumer}{through}"
        )
    if bn is None and path.norms:
        raise ValueError(
            f"{path.norms[0]} normalises {producer}'s output before {consumer}: "
            f"pass bn={path.norms[0]!r}"
        )
    if bn is not None and bn not in path.norms:
        raise ValueError(
            f"bn {bn!r} is not between {producer} and {consumer} "
            f"(norms on that path: {list(path.norms)})"
        )
    if len(path.norms) > 1:
        raise ValueError(
            f"more than one norm between {producer} and {consumer}: {list(path.norms)}"
        )
    n_out, n_in = prod.weight.shape[0], cons.weight.shape[1]
    if (n_in % n_out) if path.flattened else (n_in != n_out):
        raise ValueError(
            f"{consumer} has {n_in} inputs, not "
            f"{'a multiple of' if path.flattened else 'equal to'} {producer}'s "
            f"{n_out} outputs: they are not directly connected"
        )
    if norm is not None and norm.num_features != n_out:
        raise ValueError(
            f"bn {bn!r} has {norm.num_features} channels, {producer} has {n_out}"
        )
    new: dict[str, nn.Module] = {
        producer: keep_outputs(prod, keep),
        consumer: keep_inputs(cons, keep, spatial=n_in // n_out),
    }
    if norm is not None:
        new[bn] = keep_bn(norm, keep)
    return keep, new


def _set(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


def prune_filters(
    model: nn.Module,
    producer: str,
    consumer: str,
    amount: float,
    *,
    bn: str | None = None,
    multiple_of: int = 1,
) -> Tensor:
    """Remove the ``amount`` fraction of ``producer``'s filters of smallest L1 norm.

    The layers are replaced by smaller copies: ``producer`` keeps output channels
    ``keep = filters_to_keep(producer, amount)``, ``bn`` keeps channels ``keep`` and
    ``consumer`` keeps input channels ``keep`` (``keep_inputs``).

    The model is traced with ``torch.fx`` first: ``consumer`` must read ``producer``'s
    output through a direct chain (``bn`` if given, per-channel ops, optionally
    ``flatten(1)``), and ``bn`` must sit on it. Couplings are refused (see the module
    docstring). Every check runs before anything is changed.

    Args:
        model: the network, changed in place.
        producer: path of the Conv2d (``groups=1``) or Linear whose outputs are removed.
        consumer: path of the Conv2d or Linear that reads them, whose inputs are
            removed (a Linear after a flatten reads each channel as ``H·W`` inputs).
        amount: fraction of the original filters removed, in ``[0, 1)``.
        bn: path of the BatchNorm1d/2d between them, if any (required if there is one).
        multiple_of: round the number of kept filters to a multiple of this.

    Returns:
        ``model``, changed in place (the kept filters are
        ``filters_to_keep(producer layer, amount)`` of the layer before).

    Raises:
        TypeError: a layer of an unsupported type.
        ValueError: bad ``amount``/``multiple_of``, a path that does not exist, layers
            that are not directly connected; ``coupling.CouplingError`` (a ValueError)
            for a coupling or an untraceable model.
    """
    _check_multiple_of(multiple_of)
    select = partial(filters_to_keep, amount=amount, multiple_of=multiple_of)
    keep, new = _plan(model, None, producer, consumer, select, bn, {})
    for path, module in new.items():
        _set(model, path, module)
    return model


def _given(keep: Tensor, layer: Layer) -> Tensor:
    check_keep(keep, layer.weight.shape[0], "output channel")
    return keep.sort().values.to(layer.weight.device)


def prune_channels(
    model: nn.Module, chains: Sequence[tuple[str, str, str | None, Tensor]]
) -> nn.Module:
    """Keep exactly the given output channels of each producer, whatever chose them
    (activation statistics, a learned gate...): the surgery of ``prune_filters``.

    Each chain is ``(producer, consumer, bn or None, keep)``. Chains are applied in
    order and may share layers (``fc1 -> fc2`` then ``fc2 -> fc3``: the second sees
    ``fc2`` with its inputs already pruned). Every chain is checked before the model
    is changed.

    Returns:
        ``model``, changed in place.
    """
    graph = coupling.trace(model) if chains else None
    planned: dict[str, nn.Module] = {}
    for producer, consumer, bn, keep in chains:
        _, new = _plan(
            model, graph, producer, consumer, partial(_given, keep), bn, planned
        )
        planned.update(new)
    for path, module in planned.items():
        _set(model, path, module)
    return model


def resnet_blocks(model: nn.Module) -> dict[str, str]:
    """``{name: "basic" | "bottleneck"}`` of the modules shaped like torchvision's
    ResNet blocks: a ``downsample`` attribute and ``conv1 → bn1 → conv2 → bn2``
    (``→ conv3 → bn3`` in a bottleneck). Recognised by their layers, so this folder
    needs no torchvision; the coupling check before any change verifies the wiring."""

    def has(m: nn.Module, names: tuple[str, ...]) -> bool:
        kinds = {"c": nn.Conv2d, "b": nn.BatchNorm2d}
        return all(isinstance(getattr(m, n, None), kinds[n[0]]) for n in names)

    found = {}
    for name, m in model.named_modules():
        if hasattr(m, "downsample") and has(m, ("conv1", "bn1", "conv2", "bn2")):
            deep = has(m, ("conv3", "bn3"))
            found[name] = "bottleneck" if deep else "basic"
    return found


def prune_resnet_blocks(
    model: nn.Module, amount: float | dict[str, float], *, multiple_of: int = 1
) -> nn.Module:
    """Prune the inner channels of every torchvision ``BasicBlock`` and ``Bottleneck``.

    BasicBlock: ``conv1``'s outputs, ``bn1`` and ``conv2``'s inputs. Bottleneck: the
    same, then ``conv2``'s outputs, ``bn2`` and ``conv3``'s inputs, with the same
    amount. Block outputs, shortcuts and residual adds are untouched.

    Args:
        model: a ResNet built from torchvision blocks (``lwt.models.CifarResNet``,
            ``torchvision.models.resnet18``/``resnet50``...).
        amount: one fraction for every block, or ``{block path: fraction}`` for some.
        multiple_of: round each pruned width to a multiple of this.

    Returns:
        ``model``, changed in place (after every block has been checked).

    Raises:
        TypeError: the model has no such block.
        ValueError: unknown block names (the known ones are listed), amounts outside
            ``[0, 1)``, or a coupling inside a block (e.g. a grouped ResNeXt conv2).
    """
    blocks = resnet_blocks(model)
    if not blocks:
        raise TypeError("model has no ResNet block (BasicBlock or Bottleneck) to prune")
    amounts = per_layer(amount, blocks, "BasicBlocks/Bottlenecks")
    _check_multiple_of(multiple_of)
    graph = coupling.trace(model) if amounts else None
    planned: dict[str, nn.Module] = {}
    for name, a in amounts.items():
        p = f"{name}." if name else ""
        chain = ["conv1", "bn1", "conv2"]
        if blocks[name] == "bottleneck":
            chain += ["bn2", "conv3"]
        for i in range(0, len(chain) - 2, 2):
            producer, norm, consumer = (p + c for c in chain[i : i + 3])
            select = partial(filters_to_keep, amount=a, multiple_of=multiple_of)
            _, new = _plan(model, graph, producer, consumer, select, norm, planned)
            planned.update(new)
    for path, module in planned.items():
        _set(model, path, module)
    return model
