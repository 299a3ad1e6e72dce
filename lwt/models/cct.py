"""A compact convolutional transformer for 32x32 images (Hassani et al. 2021, CCT).

``x (N, 3, 32, 32)`` → **tokenizer** (two 3x3 convs, each ReLU + 3x3 max-pool with
stride 2: an 8x8 grid of ``T = 64`` tokens of width ``D``) + a learned position
embedding → ``L`` pre-norm **encoder blocks** → **sequence pooling** (an attention-
weighted mean of the tokens, no class token) → a linear classifier.

One encoder block (pre-norm, as in ViT)::

    x = x + Attention(LayerNorm(x))        # multi-head self-attention
    x = x + MLP(LayerNorm(x))              # Linear(D, rD) → GELU → Linear(rD, D)

Attention with ``H`` heads of width ``d`` (``H * d`` need not equal ``D``, so heads can
be removed for real: :meth:`Attention.keep_heads`)::

    Q, K, V = x W_q, x W_k, x W_v          # each (N, H, T, d)
    A = softmax(Q K^T / sqrt(d))           # (N, H, T, T): the n^2 term
    out = concat_h(A V) W_o                # (N, T, D)

Sequence pooling: ``w = softmax(x g)`` over the tokens (``g``: a ``D → 1`` linear), then
``z = w^T x``. Sizes: ``cct4`` (``D = 128``, ``L = 4``, ``H = 4``, ``r = 1``) has
483,659 parameters, about 1.8x ResNet-20's, on an 8x8 token grid (ResNet-20's last
stage is 8x8 too).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class Attention(nn.Module):
    """Multi-head self-attention with its heads laid out so they can be removed.

    ``qkv`` maps ``D → 3 * H * d`` (rows ``[Q heads | K heads | V heads]``, each block
    ``h * d : (h + 1) * d`` one head) and ``proj`` maps ``H * d → D``.

    Args:
        dim: token width ``D``.
        heads: number of heads ``H`` (>= 1).
        head_dim: width ``d`` of each head (default ``D // H``).
    """

    def __init__(self, dim: int, heads: int, head_dim: int | None = None) -> None:
        super().__init__()
        if heads < 1:
            raise ValueError(f"heads must be >= 1, got {heads}")
        self.heads = heads
        self.head_dim = head_dim or dim // heads
        self.qkv = nn.Linear(dim, 3 * heads * self.head_dim)
        self.proj = nn.Linear(heads * self.head_dim, dim)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(Q, K, V)``, each ``(N, H, T, d)``, of tokens ``x (N, T, D)``."""
        n, t, _ = x.shape
        qkv = self.qkv(x).view(n, t, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (N, H, T, d)
        return q, k, v

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:
        """``x (N, T, D) -> (N, T, D)``; ``bias`` is added to the attention logits
        (token merging's ``log(size)``), broadcast to ``(N, H, T, T)``."""
        return self.attend(*self.split(x), bias)

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None = None
    ) -> Tensor:
        """``concat_h(softmax(Q Kᵀ / sqrt(d) + bias) V) W_o`` from ``split``'s
        ``(N, H, T, d)`` tensors: ``(N, T, D)``."""
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (N, H, T, d)
        n, _, t, _ = out.shape
        return self.proj(out.transpose(1, 2).reshape(n, t, -1))

    def extra_repr(self) -> str:
        return f"heads={self.heads}, head_dim={self.head_dim}"


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): in training, drop a residual branch for
    a whole sample with probability ``p`` and scale the kept ones by ``1/(1-p)``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape[0], 1, 1, device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1 - self.p)


class Block(nn.Module):
    """A pre-norm encoder block: attention, then an MLP, each on a residual path."""

    def __init__(
        self, dim: int, heads: int, mlp_ratio: float, drop_path: float
    ) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)
        )
        self.drop = DropPath(drop_path)

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x), bias))  # (N, T, D)
        return x + self.drop(self.mlp(self.norm2(x)))  # (N, T, D)


class CCT(nn.Module):
    """Compact Convolutional Transformer (Hassani et al. 2021) for 32x32 inputs.

    Args:
        dim: token width ``D``.
        layers: encoder blocks ``L``.
        heads: attention heads per block ``H``.
        mlp_ratio: the MLP's hidden width is ``mlp_ratio * D``.
        tokenizer_channels: channels of the tokenizer's first conv.
        drop_path: stochastic depth of the last block (rising linearly from 0).
        num_classes: output classes.
    """

    def __init__(
        self,
        dim: int = 128,
        layers: int = 4,
        heads: int = 4,
        mlp_ratio: float = 1.0,
        tokenizer_channels: int = 64,
        drop_path: float = 0.1,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be a multiple of heads ({heads})")
        c = tokenizer_channels
        self.tokenizer = nn.Sequential(
            nn.Conv2d(3, c, 3, padding=1, bias=False),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),  # (N, c, 16, 16)
            nn.Conv2d(c, dim, 3, padding=1, bias=False),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),  # (N, D, 8, 8)
        )
        self.pos = nn.Parameter(torch.empty(1, 64, dim))
        rates = [drop_path * i / max(layers - 1, 1) for i in range(layers)]
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, p) for p in rates)
        self.norm = nn.LayerNorm(dim)
        self.pool = nn.Linear(dim, 1)
        self.fc = nn.Linear(dim, num_classes)
        self._init()

    def _init(self) -> None:
        nn.init.trunc_normal_(self.pos, std=0.2)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

    def tokens(self, x: Tensor) -> Tensor:
        """The tokenizer's output plus position: ``(N, 3, 32, 32) -> (N, 64, D)``."""
        return self.tokenizer(x).flatten(2).transpose(1, 2) + self.pos

    def head(self, x: Tensor, size: Tensor | None = None) -> Tensor:
        """Sequence pooling and the classifier: ``(N, T, D) -> (N, classes)``.
        ``size (N, T, 1)``: tokens each merged token stands for (weights by size)."""
        x = self.norm(x)
        logits = self.pool(x)  # (N, T, 1)
        if size is not None:
            logits = logits + size.log()
        w = logits.softmax(dim=1)
        return self.fc((w.transpose(1, 2) @ x).squeeze(1))  # (N, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.tokens(x)  # (N, 64, D)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def attention_macs(tokens: int, dim: int, heads: int, head_dim: int) -> int:
    """MACs of one attention layer on ``tokens`` tokens, per image:
    ``T·D·3Hd`` (Q, K, V) + ``2·H·T²·d`` (``QK^T`` and ``AV``) + ``T·Hd·D`` (output)."""
    hd = heads * head_dim
    return tokens * dim * 3 * hd + 2 * heads * tokens**2 * head_dim + tokens * hd * dim
