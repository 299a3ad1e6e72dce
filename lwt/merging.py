"""Token merging (トークン統合): fewer tokens after every block, no retraining (Bolya
et al. 2023, "Token Merging: Your ViT But Faster").

In each encoder block, after attention, the tokens are split alternately into sets A and
B; each A token is matched to its most similar B token (cosine similarity of the
attention keys, averaged over heads), and the ``r`` best-matched A tokens are merged
into their partners by a size-weighted mean::

    x_b ← (s_b x_b + Σ_{a→b} s_a x_a) / (s_b + Σ s_a),   s_b ← s_b + Σ s_a

A merged token stands for ``s`` original ones, so attention adds ``log s`` to its logits
(proportional attention) and the final pooling weights it the same way. With ``L``
blocks, ``T − L·r`` tokens reach the head; ``r = 0`` is the model itself.

Works on a model with ``tokens(x)``, ``blocks`` (each with ``norm1``, ``attn`` (with
``split`` and ``attend``), ``drop``, ``norm2``, ``mlp``) and ``head(x, size)``, as
``lwt.models.cct.CCT``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def bipartite_merge(
    x: Tensor, keys: Tensor, size: Tensor, r: int
) -> tuple[Tensor, Tensor]:
    """Merge ``r`` tokens of ``x (N, T, D)`` by bipartite soft matching on ``keys
    (N, T, Dk)``; ``size (N, T, 1)`` counts the original tokens each one stands for.
    Returns the merged ``(x, size)``: ``T − r`` tokens (``r`` capped at ``T // 2``)."""
    n, t, d = x.shape
    r = min(r, t // 2)
    if r <= 0:
        return x, size
    k = F.normalize(keys, dim=-1)
    scores = k[:, ::2] @ k[:, 1::2].transpose(1, 2)  # (N, |A|, |B|)
    best, partner = scores.max(dim=-1)  # each A token's most similar B token
    order = best.argsort(dim=-1, descending=True)[..., None]  # (N, |A|, 1)
    merged, kept = order[:, :r], order[:, r:]
    dst = partner[..., None].gather(1, merged)  # (N, r, 1)
    weighted = x * size
    xa, xb = weighted[:, ::2], weighted[:, 1::2]
    sa, sb = size[:, ::2], size[:, 1::2]
    src = xa.gather(1, merged.expand(-1, -1, d))
    xb = xb.scatter_reduce(1, dst.expand(-1, -1, d), src, reduce="sum")
    sb = sb.scatter_reduce(1, dst, sa.gather(1, merged), reduce="sum")
    x = torch.cat([xa.gather(1, kept.expand(-1, -1, d)), xb], dim=1)
    size = torch.cat([sa.gather(1, kept), sb], dim=1)
    return x / size, size


def merged_forward(model: nn.Module, x: Tensor, r: int) -> Tensor:
    """The model's forward pass, ``r`` tokens merged after each block's attention."""
    if isinstance(r, bool) or not isinstance(r, int) or r < 0:
        raise ValueError(f"r must be an int >= 0 (tokens merged per block), got {r!r}")
    t = model.tokens(x)
    size = torch.ones(*t.shape[:2], 1, dtype=t.dtype, device=t.device)
    for block in model.blocks:
        attn = block.attn
        q, k, v = attn.split(block.norm1(t))  # each (N, H, T, d)
        bias = size.log().transpose(1, 2)[
            :, None
        ]  # (N, 1, 1, T): proportional attention
        t = t + block.drop(attn.attend(q, k, v, bias.to(q.dtype)))
        t, size = bipartite_merge(t, k.mean(dim=1), size, r)
        t = t + block.drop(block.mlp(block.norm2(t)))
    return model.head(t, size)


class TokenMerging(nn.Module):
    """``model`` run with ``r`` tokens merged per block (no parameters of its own)."""

    def __init__(self, model: nn.Module, r: int) -> None:
        super().__init__()
        if isinstance(r, bool) or not isinstance(r, int) or r < 0:
            raise ValueError(f"r must be an int >= 0, got {r!r}")
        self.model, self.r = model, r

    def forward(self, x: Tensor) -> Tensor:
        return merged_forward(self.model, x, self.r)

    def extra_repr(self) -> str:
        return f"r={self.r}"
