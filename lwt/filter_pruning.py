"""Structured pruning (構造的枝刈り): remove whole filters, for real.

Li et al. 2017 rank the filters of a conv layer by their L1 norm
``s_j = Σ_{c,u,v} |W[j, c, u, v]|`` and remove the smallest ones. Removing output
channel ``j`` of a layer also removes channel ``j`` of the BatchNorm after it and input
channel ``j`` of the next layer, so the result is a smaller *dense* model: fewer
parameters, fewer MACs, and faster on ordinary dense kernels. Surviving weights are
copied exactly.

In a ResNet basic block only the inner channels (``conv1`` → ``bn1`` → ``conv2``) are
pruned, so the block's output, and the residual add, keep their width (Li et al.'s
ResNet-56/110 "-A/-B" variants prune the first layer of each block in the same way).

Reference: Li, Kadav, Durdanovic, Samet, Graf. Pruning Filters for Efficient ConvNets.
ICLR 2017.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

Layer = nn.Conv2d | nn.Linear


def l1_norms(layer: Layer) -> Tensor:
    """``(C_out,)`` L1 norm of each filter (conv) or neuron (linear) of ``layer``."""
    _check_layer(layer, "layer")
    return layer.weight.detach().abs().flatten(1).sum(1)


def smallest_l1_removed(layer: Layer, amount: float, multiple_of: int = 1) -> Tensor:
    """Sorted indices of the filters to *keep* after removing ``round(amount·C_out)``
    filters of smallest L1 norm.

    With ``multiple_of = m`` the number kept is rounded to the nearest multiple of
    ``m`` (at least ``m``): CPU kernels vectorise over 8 or 16 channels, so widths
    like 19 or 38 waste part of every vector.
    """
    if not 0.0 <= amount < 1.0:
        raise ValueError(
            f"amount must be a fraction of filters in [0, 1), got {amount}"
        )
    if multiple_of < 1:
        raise ValueError(f"multiple_of must be >= 1, got {multiple_of}")
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


def _check_layer(layer: nn.Module, what: str) -> None:
    if not isinstance(layer, (nn.Conv2d, nn.Linear)):
        raise TypeError(f"{what} must be Conv2d or Linear, got {type(layer).__name__}")
    if isinstance(layer, nn.Conv2d) and layer.groups != 1:
        raise TypeError(
            f"{what}: grouped convolutions (groups={layer.groups}) unsupported"
        )


def _copy(layer: Layer, weight: Tensor, bias: Tensor | None) -> Layer:
    if isinstance(layer, nn.Conv2d):
        new = nn.Conv2d(
            weight.shape[1],
            weight.shape[0],
            layer.kernel_size,
            layer.stride,
            layer.padding,
            layer.dilation,
            bias=bias is not None,
            padding_mode=layer.padding_mode,
        )
    else:
        new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    new = new.to(weight.device, weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def keep_outputs(layer: Layer, keep: Tensor) -> Layer:
    """A copy of ``layer`` with only output channels ``keep``."""
    _check_layer(layer, "producer")
    bias = layer.bias.detach()[keep] if layer.bias is not None else None
    return _copy(layer, layer.weight.detach()[keep], bias)


def keep_inputs(layer: Layer, keep: Tensor, spatial: int = 1) -> Layer:
    """A copy of ``layer`` with only input channels ``keep``.

    For a Linear layer fed by a flattened ``(C, H, W)`` map, ``spatial = H·W``: input
    feature ``c·spatial + s`` belongs to channel ``c``.
    """
    _check_layer(layer, "consumer")
    idx = (keep[:, None] * spatial + torch.arange(spatial)).flatten()
    bias = layer.bias.detach() if layer.bias is not None else None
    return _copy(layer, layer.weight.detach()[:, idx], bias)


def keep_bn(bn: nn.BatchNorm2d, keep: Tensor) -> nn.BatchNorm2d:
    """A copy of ``bn`` with only channels ``keep`` (affine and running stats)."""
    new = nn.BatchNorm2d(
        len(keep), bn.eps, bn.momentum, bn.affine, bn.track_running_stats
    ).to(bn.weight.device)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            if getattr(bn, name) is not None:
                getattr(new, name).copy_(getattr(bn, name)[keep])
        if bn.num_batches_tracked is not None:
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new.train(bn.training)


def _set(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


def prune_filters(
    model: nn.Module,
    producer: str,
    consumer: str,
    amount: float,
    bn: str | None = None,
    multiple_of: int = 1,
) -> Tensor:
    """Remove the ``amount`` fraction of ``producer``'s filters of smallest L1 norm.

    Args:
        model: the network, changed in place.
        producer: path of the conv/linear layer whose outputs are removed.
        consumer: path of the next conv/linear layer, whose inputs are removed
            (a Linear after a flatten is handled: its inputs come in channel groups).
        amount: fraction of filters to remove, in ``[0, 1)``.
        bn: path of a BatchNorm2d between them, if any.
        multiple_of: round the number of kept filters to a multiple of this.

    Returns:
        The indices of the kept filters.
    """
    prod, cons = model.get_submodule(producer), model.get_submodule(consumer)
    _check_layer(prod, producer)
    _check_layer(cons, consumer)
    n_out, n_in = prod.weight.shape[0], cons.weight.shape[1]
    if n_in % n_out:
        raise ValueError(
            f"{consumer} has {n_in} inputs, not a multiple of {producer}'s "
            f"{n_out} outputs: they are not directly connected"
        )
    keep = smallest_l1_removed(prod, amount, multiple_of)
    _set(model, producer, keep_outputs(prod, keep))
    _set(model, consumer, keep_inputs(cons, keep, n_in // n_out))
    if bn is not None:
        _set(model, bn, keep_bn(model.get_submodule(bn), keep))
    return keep


def prune_resnet_blocks(
    model: nn.Module, amount: float | dict[str, float], multiple_of: int = 1
) -> nn.Module:
    """Prune the inner channels of every torchvision ``BasicBlock`` of ``model``.

    Args:
        model: a ResNet built from ``BasicBlock`` (e.g. ``lwt.models.CifarResNet``).
        amount: one fraction for every block, or ``{block path: fraction}``.
        multiple_of: round each block's kept width to a multiple of this.

    Returns:
        ``model`` (changed in place): each block's ``conv1``/``bn1`` outputs and
        ``conv2`` inputs reduced; block outputs and shortcuts untouched.
    """
    blocks = {n: m for n, m in model.named_modules() if isinstance(m, BasicBlock)}
    if not blocks:
        raise TypeError("model has no torchvision BasicBlock to prune")
    amounts = amount if isinstance(amount, dict) else dict.fromkeys(blocks, amount)
    unknown = sorted(set(amounts) - set(blocks))
    if unknown:
        raise ValueError(f"{unknown} are not BasicBlocks; blocks: {sorted(blocks)}")
    for name, a in amounts.items():
        prefix = f"{name}." if name else ""
        prune_filters(
            model, prefix + "conv1", prefix + "conv2", a, prefix + "bn1", multiple_of
        )
    return model
