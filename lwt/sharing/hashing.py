"""HashedNets (ハッシュ化ネット): a layer whose weight matrix is hashed into K values.

The layer's *virtual* ``out × in`` matrix is never stored: entry ``(i, j)`` is one of
``K`` real parameters chosen by a hash, times a sign from a second hash (Chen,
Wilson, Tyree, Weinberger, Chen. Compressing Neural Networks with the Hashing Trick.
ICML 2015, eq. 3 and §4.3):

    V_ij = ξ(i, j) · w_{h(i, j)},   h: (i, j) → {0 … K-1},   ξ: (i, j) → {±1}.

The gradient of a real weight is the signed sum over the entries that share it,
``∂L/∂w_k = Σ_{h(i,j)=k} ξ(i,j) ∂L/∂V_ij`` — what autograd does for the gather. The
hashes are Carter–Wegman universal hashes ``((a·key + b) mod p) mod K`` with
``p = 2^31 - 1`` and ``key = i·in + j``; ``a, b`` are drawn from ``seed``, so only the
seed and ``K`` weights need storing.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

PRIME = 2**31 - 1


def universal_hash(keys: Tensor, buckets: int, *, seed: int) -> Tensor:
    """``((a·key + b) mod p) mod buckets`` with ``a, b`` drawn from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    a = int(torch.randint(1, PRIME, (1,), generator=g))
    b = int(torch.randint(0, PRIME, (1,), generator=g))
    return ((a * keys.long() + b) % PRIME) % buckets


class HashedLinear(nn.Module):
    """A linear layer with ``n_weights`` real weights shared by hashing (HashedNets).

    Args:
        in_features, out_features: the virtual matrix's shape.
        n_weights: K, the number of real weights (1 … in·out).
        bias: add a (not hashed) bias of ``out_features``.
        seed: picks the two hash functions (stored in the state dict).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        n_weights: int,
        *,
        bias: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError("in_features and out_features must be >= 1")
        if not 1 <= n_weights <= in_features * out_features:
            raise ValueError(
                f"n_weights must be in 1..{in_features * out_features}, got {n_weights}"
            )
        self.in_features, self.out_features = in_features, out_features
        bound = 1 / math.sqrt(in_features)  # the virtual matrix's nn.Linear range
        self.weight = nn.Parameter(torch.empty(n_weights).uniform_(-bound, bound))
        self.bias = (
            nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
            if bias
            else None
        )
        self.register_buffer("seed", torch.tensor(seed))
        self.register_buffer(
            "index", torch.empty(0, dtype=torch.long), persistent=False
        )
        self.register_buffer("sign", torch.empty(0), persistent=False)
        self._rehash()
        # a loaded state dict brings its own seed: rebuild the hashes from it
        self.register_load_state_dict_post_hook(lambda module, _: module._rehash())

    def _rehash(self) -> None:
        """The index and sign of every virtual entry, from ``seed`` (not stored)."""
        o, i, seed = self.out_features, self.in_features, int(self.seed)
        keys = torch.arange(i * o).view(o, i)
        device = self.weight.device
        self.index = universal_hash(keys, self.weight.numel(), seed=2 * seed).to(device)
        sign = universal_hash(keys, 2, seed=2 * seed + 1).float() * 2 - 1
        self.sign = sign.to(device)

    def virtual_weight(self) -> Tensor:
        """The ``out × in`` matrix the layer computes with."""
        return self.weight[self.index] * self.sign

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.virtual_weight(), self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"n_weights={self.weight.numel()}")  # fmt: skip


__all__ = ["HashedLinear", "universal_hash"]
