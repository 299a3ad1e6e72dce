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
- ``keep_outputs`` / ``keep_inputs`` / ``keep_bn``: copies of one layer with only some
  output channels / input channels / normalised channels.
- ``prune_filters(model, producer, consumer, amount, *, bn=None, multiple_of=1)``:
  prune one producer -> (BatchNorm) -> consumer chain in place.
- ``prune_resnet_blocks(model, amount, *, multiple_of=1)``: prune the inner channels
  of every torchvision ``BasicBlock`` and ``Bottleneck``.

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

from numbers import Real

import torch
from torch import Tensor, fx, nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from . import coupling
from ._amounts import per_layer

Layer = nn.Conv2d | nn.Linear
Norm = nn.BatchNorm1d | nn.BatchNorm2d


def _check_layer(layer: nn.Module, what: str, *, grouped_ok: bool = False) -> None:
    # Exact types: a subclass (fake-quant, parametrized...) would lose its behaviour
    # when replaced by the plain copy.
    if type(layer) not in (nn.Conv2d, nn.Linear):
        raise TypeError(f"{what} must be Conv2d or Linear, got {type(layer).__name__}")
    if isinstance(layer, nn.Conv2d) and layer.groups != 1 and not grouped_ok:
        raise TypeError(
            f"{what}: grouped convolutions (groups={layer.groups}) unsupported"
        )


def _check_multiple_of(multiple_of: int) -> None:
    if isinstance(multiple_of, bool) or not isinstance(multiple_of, int):
        raise TypeError(f"multiple_of must be an int >= 1, got {multiple_of!r}")
    if multiple_of < 1:
        raise ValueError(f"multiple_of must be >= 1, got {multiple_of}")


def _check_keep(keep: Tensor, n: int, what: str) -> None:
    if not isinstance(keep, Tensor) or keep.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"keep must be an int64/int32 tensor of {what} indices")
    if keep.dim() != 1 or len(keep) == 0:
        raise ValueError(f"keep must be a non-empty 1-D tensor, got shape {keep.shape}")
    if keep.min() < 0 or keep.max() >= n or len(keep.unique()) != len(keep):
        raise ValueError(f"keep must hold distinct {what} indices in [0, {n})")


def l1_norms(layer: Layer) -> Tensor:
    """``(C_out,)`` L1 norm ``s_j = Σ |W[j, ...]|`` of each filter (conv) or neuron
    (linear) of ``layer``."""
    _check_layer(layer, "layer")
    return layer.weight.detach().abs().flatten(1).sum(1)


def filters_to_keep(layer: Layer, amount: float, *, multiple_of: int = 1) -> Tensor:
    """Sorted indices of the filters that survive removing the smallest-L1 ones.

    ``k = C_out − round(amount · C_out)`` filters are kept: those with the
    largest ``s_j`` (``l1_norms``; ties keep the lower index). With
    ``multiple_of = m`` the count is rounded to the nearest multiple of ``m`` (at
    least ``m``, at most ``C_out``): CPU kernels vectorise over 8 or 16 channels, so
    widths like 19 or 38 waste part of every vector.

    Args:
        layer: a Conv2d (``groups=1``) or Linear layer.
        amount: fraction of filters to remove, in ``[0, 1)``.
        multiple_of: round the number kept to a multiple of this (``>= 1``).

    Returns:
        ``(k,)`` int64 indices, ascending, on the layer's device.
    """
    _check_layer(layer, "layer")
    if isinstance(amount, bool) or not isinstance(amount, Real):
        raise TypeError(f"amount must be a fraction in [0, 1), got {amount!r}")
    if not 0.0 <= amount < 1.0:
        raise ValueError(
            f"amount must be a fraction of filters in [0, 1), got {amount}"
        )
    _check_multiple_of(multiple_of)
    n = layer.weight.shape[0]
    keep = n - round(amount * n)
    if multiple_of > 1:
        keep = min(n, max(multiple_of, multiple_of * round(keep / multiple_of)))
    if keep < 1:
        raise ValueError(
            f"amount={amount} would remove all {n} filters; keep at least 1"
        )
    order = torch.argsort(l1_norms(layer), descending=True, stable=True)
    return order[:keep].sort().values


def _copy(layer: Layer, weight: Tensor, bias: Tensor | None) -> Layer:
    """A new layer of ``layer``'s kind and settings holding ``weight`` and ``bias``."""
    kw = {"bias": bias is not None, "device": weight.device, "dtype": weight.dtype}
    if isinstance(layer, nn.Conv2d):
        new: Layer = nn.Conv2d(
            weight.shape[1], weight.shape[0], layer.kernel_size, layer.stride,
            layer.padding, layer.dilation, padding_mode=layer.padding_mode, **kw,
        )  # fmt: skip
    else:
        new = nn.Linear(weight.shape[1], weight.shape[0], **kw)
    with torch.no_grad():
        new.weight.copy_(weight)
        new.weight.requires_grad_(layer.weight.requires_grad)
        if bias is not None:
            new.bias.copy_(bias)
            new.bias.requires_grad_(layer.bias.requires_grad)
    return new.train(layer.training)


def keep_outputs(layer: Layer, keep: Tensor) -> Layer:
    """A copy of ``layer`` with only output channels ``keep``: ``W' = W[keep]``,
    ``b' = b[keep]``."""
    _check_layer(layer, "producer")
    _check_keep(keep, layer.weight.shape[0], "output channel")
    keep = keep.to(layer.weight.device)
    bias = layer.bias.detach()[keep] if layer.bias is not None else None
    return _copy(layer, layer.weight.detach()[keep], bias)


def keep_inputs(layer: Layer, keep: Tensor, *, spatial: int = 1) -> Layer:
    """A copy of ``layer`` with only input channels ``keep``: ``W' = W[:, idx]``.

    For a Linear layer fed by a flattened ``(C, H, W)`` map, ``spatial = H·W``: input
    feature ``c·spatial + s`` belongs to channel ``c``, so
    ``idx = [c·spatial + s for c in keep for s in range(spatial)]``.
    """
    _check_layer(layer, "consumer")
    if isinstance(spatial, bool) or not isinstance(spatial, int) or spatial < 1:
        raise ValueError(f"spatial must be an int >= 1, got {spatial!r}")
    n_in = layer.weight.shape[1]
    if isinstance(layer, nn.Conv2d) and spatial != 1:
        raise ValueError(f"spatial must be 1 for a Conv2d, got {spatial}")
    if n_in % spatial:
        raise ValueError(f"{n_in} input features are not a multiple of {spatial=}")
    _check_keep(keep, n_in // spatial, "input channel")
    device = layer.weight.device
    idx = keep.to(device)[:, None] * spatial + torch.arange(spatial, device=device)
    bias = layer.bias.detach() if layer.bias is not None else None
    return _copy(layer, layer.weight.detach()[:, idx.flatten()], bias)


def keep_bn(bn: Norm, keep: Tensor) -> Norm:
    """A copy of ``bn`` (BatchNorm1d/2d) with only channels ``keep``.

    Affine parameters and running statistics are copied when present (``affine=False``
    and ``track_running_stats=False`` are kept as they are), as are ``eps``,
    ``momentum``, ``num_batches_tracked`` and the train/eval mode.
    """
    if type(bn) not in (nn.BatchNorm1d, nn.BatchNorm2d):
        raise TypeError(
            f"bn must be BatchNorm1d or BatchNorm2d, got {type(bn).__name__}"
        )
    _check_keep(keep, bn.num_features, "channel")
    ref = bn.weight if bn.weight is not None else bn.running_mean
    factory = {} if ref is None else {"device": ref.device, "dtype": ref.dtype}
    new = type(bn)(
        len(keep), bn.eps, bn.momentum, bn.affine, bn.track_running_stats, **factory
    )
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            old = getattr(bn, name)
            if old is not None:
                getattr(new, name).copy_(old[keep.to(old.device)])
        for name in ("weight", "bias"):
            if getattr(bn, name) is not None:
                getattr(new, name).requires_grad_(getattr(bn, name).requires_grad)
        if bn.num_batches_tracked is not None:
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new.train(bn.training)


def _module(model: nn.Module, path: str, what: str) -> nn.Module:
    if not isinstance(path, str):
        raise TypeError(f"{what} must be a submodule path (str), got {path!r}")
    try:
        return model.get_submodule(path)
    except AttributeError as err:
        raise ValueError(f"{what} {path!r} is not a submodule of the model") from err


def _plan(
    model: nn.Module,
    graph: fx.Graph | None,
    producer: str,
    consumer: str,
    amount: float,
    bn: str | None,
    multiple_of: int,
    planned: dict[str, nn.Module],
) -> tuple[Tensor, dict[str, nn.Module]]:
    """Check one producer → consumer prune and build its new layers (model untouched).

    ``planned`` holds replacements already decided (a Bottleneck's conv2 after its
    inputs were pruned); they stand in for the model's layers.
    """

    def current(path: str, what: str) -> nn.Module:
        return planned[path] if path in planned else _module(model, path, what)

    prod, cons = current(producer, "producer"), current(consumer, "consumer")
    _check_layer(prod, f"producer {producer!r}")
    _check_layer(cons, f"consumer {consumer!r}", grouped_ok=True)
    norm = None
    if bn is not None:
        norm = _module(model, bn, "bn")
        if type(norm) not in (nn.BatchNorm1d, nn.BatchNorm2d):
            raise TypeError(
                f"bn {bn!r} must be BatchNorm1d or BatchNorm2d, "
                f"got {type(norm).__name__}"
            )
    try:
        keep = filters_to_keep(prod, amount, multiple_of=multiple_of)
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
        amount: fraction of filters to remove, in ``[0, 1)``.
        bn: path of the BatchNorm1d/2d between them, if any (required if there is one).
        multiple_of: round the number of kept filters to a multiple of this.

    Returns:
        The sorted indices of the kept filters (on the producer's device).

    Raises:
        TypeError: a layer of an unsupported type.
        ValueError: bad ``amount``/``multiple_of``, a path that does not exist, layers
            that are not directly connected; ``coupling.CouplingError`` (a ValueError)
            for a coupling or an untraceable model.
    """
    _check_multiple_of(multiple_of)
    keep, new = _plan(model, None, producer, consumer, amount, bn, multiple_of, {})
    for path, module in new.items():
        _set(model, path, module)
    return keep


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
    blocks = {
        n: m
        for n, m in model.named_modules()
        if isinstance(m, (BasicBlock, Bottleneck))
    }
    if not blocks:
        raise TypeError("model has no torchvision BasicBlock or Bottleneck to prune")
    amounts = per_layer(amount, blocks, "BasicBlocks/Bottlenecks")
    _check_multiple_of(multiple_of)
    graph = coupling.trace(model) if amounts else None
    planned: dict[str, nn.Module] = {}
    for name, a in amounts.items():
        p = f"{name}." if name else ""
        chain = ["conv1", "bn1", "conv2"]
        if isinstance(blocks[name], Bottleneck):
            chain += ["bn2", "conv3"]
        for i in range(0, len(chain) - 2, 2):
            producer, norm, consumer = (p + c for c in chain[i : i + 3])
            _, new = _plan(
                model, graph, producer, consumer, a, norm, multiple_of, planned
            )
            planned.update(new)
    for path, module in planned.items():
        _set(model, path, module)
    return model
