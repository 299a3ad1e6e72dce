"""Channel surgery: copies of a layer with only some of its channels.

Removing output channel ``j`` of a producer means ``W' = W[keep]``, ``b' = b[keep]``;
its BatchNorm keeps entries ``keep``; its consumer keeps input channels ``keep``
(``W' = W[:, keep]``; after a flatten, channel ``c`` is ``spatial`` consecutive
features). Surviving weights are copied exactly, on the layer's device and dtype, and
the copies keep the layer's settings, ``requires_grad`` and train/eval mode.
``structured`` (L1 filter ranking) and ``neurons`` (activation statistics) decide
*which* channels go; this file only performs the cut.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

Layer = nn.Conv2d | nn.Linear
Norm = nn.BatchNorm1d | nn.BatchNorm2d


def check_layer(layer: nn.Module, what: str, *, grouped_ok: bool = False) -> None:
    # Exact types: a subclass (fake-quant, parametrized...) would lose its behaviour
    # when replaced by the plain copy.
    if type(layer) not in (nn.Conv2d, nn.Linear):
        raise TypeError(f"{what} must be Conv2d or Linear, got {type(layer).__name__}")
    if isinstance(layer, nn.Conv2d) and layer.groups != 1 and not grouped_ok:
        raise TypeError(
            f"{what}: grouped convolutions (groups={layer.groups}) unsupported"
        )


def check_keep(keep: Tensor, n: int, what: str) -> None:
    if not isinstance(keep, Tensor) or keep.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"keep must be an int64/int32 tensor of {what} indices")
    if keep.dim() != 1 or len(keep) == 0:
        raise ValueError(f"keep must be a non-empty 1-D tensor, got shape {keep.shape}")
    if keep.min() < 0 or keep.max() >= n or len(keep.unique()) != len(keep):
        raise ValueError(f"keep must hold distinct {what} indices in [0, {n})")


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
    if hasattr(layer, "original_width"):
        new.original_width = layer.original_width
    return new.train(layer.training)


def original_width(layer: Layer) -> int:
    """The layer's output width before its first structured prune (``amount`` is a
    fraction of it): recorded on the copies :func:`keep_outputs` makes, else the
    current width. A plain attribute: a model rebuilt from a checkpoint starts anew."""
    return int(getattr(layer, "original_width", layer.weight.shape[0]))


def keep_outputs(layer: Layer, keep: Tensor) -> Layer:
    """A copy of ``layer`` with only output channels ``keep``: ``W' = W[keep]``,
    ``b' = b[keep]``."""
    check_layer(layer, "producer")
    check_keep(keep, layer.weight.shape[0], "output channel")
    keep = keep.to(layer.weight.device)
    bias = layer.bias.detach()[keep] if layer.bias is not None else None
    new = _copy(layer, layer.weight.detach()[keep], bias)
    new.original_width = original_width(layer)
    return new


def keep_inputs(layer: Layer, keep: Tensor, *, spatial: int = 1) -> Layer:
    """A copy of ``layer`` with only input channels ``keep``: ``W' = W[:, idx]``.

    For a Linear layer fed by a flattened ``(C, H, W)`` map, ``spatial = H·W``: input
    feature ``c·spatial + s`` belongs to channel ``c``, so
    ``idx = [c·spatial + s for c in keep for s in range(spatial)]``.
    """
    check_layer(layer, "consumer")
    if isinstance(spatial, bool) or not isinstance(spatial, int) or spatial < 1:
        raise ValueError(f"spatial must be an int >= 1, got {spatial!r}")
    n_in = layer.weight.shape[1]
    if isinstance(layer, nn.Conv2d) and spatial != 1:
        raise ValueError(f"spatial must be 1 for a Conv2d, got {spatial}")
    if n_in % spatial:
        raise ValueError(f"{n_in} input features are not a multiple of {spatial=}")
    check_keep(keep, n_in // spatial, "input channel")
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
    check_keep(keep, bn.num_features, "channel")
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


def submodule(model: nn.Module, path: str, what: str) -> nn.Module:
    """``model.get_submodule(path)``, with errors that name ``what`` the path is for."""
    if not isinstance(path, str):
        raise TypeError(f"{what} must be a submodule path (str), got {path!r}")
    try:
        return model.get_submodule(path)
    except AttributeError as err:
        raise ValueError(f"{what} {path!r} is not a submodule of the model") from err
