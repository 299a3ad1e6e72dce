"""k-means weight sharing (重み共有) with codebook fine-tuning.

Each layer's surviving (nonzero) weights are clustered into ``k = 2^b`` groups by 1-D
k-means; every weight is replaced by its cluster's centroid, so the layer is stored
as ``b``-bit cluster indices plus a ``k``-entry float codebook (Han, Mao, Dally. Deep
Compression. ICLR 2016, §3):

    minimise  Σ_i Σ_{w ∈ c_i} |w - C_i|²      (Han eq. 2; eq. 1 is the compression rate)

Centroid initialisation matters (Han §3.2, compared in §6.2): *linear* (evenly spaced
between the smallest and largest weight; their best "in all cases except at 3 bits":
it keeps the rare large weights), *density* (the weights' CDF spaced evenly on its y
axis and read back on the x axis: ``C_i = F⁻¹((i + ½)/k)``, quantiles that never sit on
the extremes) and *random* (k weights drawn at random).

Fine-tuning trains the centroids, not the weights: the gradient of centroid ``C_k``
is the sum of the gradients of the weights in its cluster (Han eq. 3),

    ∂L/∂C_k = Σ_{i,j} ∂L/∂W_ij · 1[I_ij = k],

which is exactly what autograd computes for ``W = C[I] * mask``: a
``torch.nn.utils.parametrize`` parametrization whose trainable original *is* the
codebook. Pruned weights stay zero (the mask), so any training loop fine-tunes it.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

INITS = ("linear", "density", "random")
SHAREABLE = (nn.Conv2d, nn.Linear)


def _check_bits(bits: object, where: str = "bits") -> int:
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise TypeError(f"{where} must be an int, got {type(bits).__name__}")
    if not 1 <= bits <= 16:
        raise ValueError(f"{where} must be in 1..16, got {bits}")
    return bits


def init_centroids(values: Tensor, k: int, *, init: str = "linear", seed: int = 0):
    """``k`` starting centroids (sorted) for the 1-D ``values``, by ``init``."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    v = values.detach().flatten().double()
    if init == "linear":
        return torch.linspace(v.min().item(), v.max().item(), k, dtype=torch.float64)
    if init == "density":  # the CDF read at evenly spaced levels: F^-1((i + 1/2) / k)
        levels = (torch.arange(k, dtype=torch.float64) + 0.5) / k
        ranks = (levels * v.numel() - 0.5).round().long().clamp(0, v.numel() - 1)
        return v.sort().values[ranks]
    g = torch.Generator().manual_seed(seed)
    return v[torch.randperm(v.numel(), generator=g)[:k]].sort().values


def kmeans_1d(
    values: Tensor, k: int, *, init: str = "linear", iters: int = 100, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means on scalars: ``(centroids, labels)``.

    ``centroids`` (k,) sorted ascending (float32); ``labels`` (same shape as
    ``values``, int64) the index of each value's nearest centroid. In 1-D the nearest
    centroid is found by bisection on the midpoints between sorted centroids; an empty
    cluster keeps its centroid.

    Raises:
        ValueError: fewer values than clusters, ``k < 1`` or an unknown ``init``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if values.numel() < k:
        raise ValueError(f"{values.numel()} values cannot fill k={k} clusters")
    v = values.detach().flatten().double()
    c = init_centroids(v, k, init=init, seed=seed)
    labels = None
    for _ in range(iters):
        new = torch.bucketize(v, (c[1:] + c[:-1]) / 2)
        if labels is not None and torch.equal(new, labels):
            break
        labels = new
        sums = torch.zeros(k, dtype=v.dtype).index_add_(0, labels, v)
        counts = torch.bincount(labels, minlength=k)
        c = torch.where(counts > 0, sums / counts.clamp(min=1), c).sort().values
    labels = torch.bucketize(v, (c[1:] + c[:-1]) / 2)
    return c.float(), labels.view(values.shape)


class SharedWeight(nn.Module):
    """Parametrization ``W = codebook[labels] * mask``; its original is the codebook.

    Register with ``parametrize.register_parametrization(layer, "weight", p,
    unsafe=True)`` (the original has shape ``(k,)``, not the weight's shape), as
    :func:`share_weights` does.
    """

    def __init__(self, labels: Tensor, mask: Tensor, codebook: Tensor) -> None:
        super().__init__()
        self.register_buffer("labels", labels)
        self.register_buffer("mask", mask)
        self._codebook = codebook

    def forward(self, codebook: Tensor) -> Tensor:
        return codebook[self.labels] * self.mask

    def right_inverse(self, weight: Tensor) -> Tensor:
        return self._codebook.to(weight)  # the original becomes the codebook


def _layers(model: nn.Module, bits) -> dict[str, tuple[nn.Module, int]]:  # noqa: ANN001
    layers = {n: m for n, m in model.named_modules() if isinstance(m, SHAREABLE)}
    if isinstance(bits, dict):
        unknown = sorted(set(bits) - set(layers))
        if unknown:
            raise ValueError(
                f"bits names {unknown}; conv/linear layers: {list(layers)}"
            )
        return {n: (layers[n], _check_bits(b, f"bits[{n!r}]")) for n, b in bits.items()}
    b = _check_bits(bits)
    return {n: (m, b) for n, m in layers.items()}


def check_shares(
    model: nn.Module, bits: int | dict[str, int]
) -> dict[str, tuple[nn.Module, int]]:
    """``{name: (layer, bits)}`` that :func:`share_weights` would share, checked for
    every layer before anything changes: known conv/linear names, widths in 1..16, no
    pruning mask or parametrization still attached, at least ``2^bits`` nonzero
    weights.

    Raises:
        ValueError: the first layer that fails, named.
    """
    plan = _layers(model, bits)
    for name, (layer, b) in plan.items():
        masked = hasattr(layer, "weight_mask")  # a torch.nn.utils.prune mask
        if masked or parametrize.is_parametrized(layer, "weight"):
            raise ValueError(f"layer {name!r} is masked or parametrized (fold its "
                             "pruning mask first: pruning.make_permanent)")  # fmt: skip
        nnz = int((layer.weight != 0).sum())
        if nnz < 2**b:
            raise ValueError(f"layer {name!r} has {nnz} nonzero weights, fewer than "
                             f"2^{b}")  # fmt: skip
    return plan


def share_weights(
    model: nn.Module, bits: int | dict[str, int], *, init: str = "linear", seed: int = 0
) -> nn.Module:
    """Cluster each layer's nonzero weights into ``2^bits`` shared values (in place).

    Args:
        model: a trained (possibly pruned, masks folded) network.
        bits: one width in 1..16 for every conv/linear layer, or ``{layer: bits}``.
        init: centroid initialisation, ``"linear"``, ``"density"`` or ``"random"``.
        seed: for ``init="random"``.

    Returns:
        ``model``: each layer's ``weight`` parametrized by :class:`SharedWeight`,
        whose trainable codebook is ``layer.parametrizations.weight.original``.

    Raises:
        ValueError: bad ``bits``/``init``, or a layer with fewer nonzero weights than
            clusters (checked for every layer before any is changed).
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    plan = check_shares(model, bits)
    for layer, b in plan.values():
        w = layer.weight.detach()
        mask = (w != 0).to(w.dtype)
        centroids, lab = kmeans_1d(w[w != 0], 2**b, init=init, seed=seed)
        labels = torch.zeros(w.shape, dtype=torch.long, device=w.device)
        labels[w != 0] = lab.to(w.device)
        p = SharedWeight(labels, mask, centroids)
        parametrize.register_parametrization(layer, "weight", p, unsafe=True)
    return model


def codebooks(model: nn.Module) -> dict[str, Tensor]:
    """The codebook of every shared layer, by module path."""
    return {
        n: m.parametrizations.weight.original.detach()
        for n, m in model.named_modules()
        if parametrize.is_parametrized(m, "weight")
        and isinstance(m.parametrizations.weight[0], SharedWeight)
    }


def unshare(model: nn.Module) -> nn.Module:
    """Remove the parametrizations (in place): plain weights with the shared values."""
    for m in model.modules():
        if parametrize.is_parametrized(m, "weight") and isinstance(
            m.parametrizations.weight[0], SharedWeight
        ):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return model


def shared_copy(
    model: nn.Module, bits: int | dict[str, int], *, init: str = "linear"
) -> nn.Module:
    """A weight-shared copy with plain weights (``model`` is left as it is)."""
    return unshare(share_weights(copy.deepcopy(model), bits, init=init))


__all__ = [
    "INITS",
    "SharedWeight",
    "check_shares",
    "codebooks",
    "init_centroids",
    "kmeans_1d",
    "share_weights",
    "shared_copy",
    "unshare",
]
