"""Block-circulant linear layers (巡回行列), computed with the FFT.

A circulant ``b × b`` matrix is fixed by its first column ``c``: ``C_ij = c[(i - j)
mod b]``, so ``y = C x`` is a circular convolution, ``y = IFFT(FFT(c) ⊙ FFT(x))``:
``b`` parameters instead of ``b²`` and ``O(b log b)`` time instead of ``O(b²)``
(Cheng, Yu, Feris, Kumar, Choudhary, Chang. An exploration of parameter redundancy in
deep networks with circulant projections. ICCV 2015). A non-square ``out × in`` layer
is tiled by ``⌈out/b⌉ × ⌈in/b⌉`` circulant blocks (Ding et al. CirCNN, MICRO 2017):
the input is zero-padded to a multiple of ``b`` and the output cut to ``out``,

    y_q = Σ_p IFFT(FFT(c_qp) ⊙ FFT(x_p)),   ⌈out/b⌉·⌈in/b⌉·b parameters.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class CirculantLinear(nn.Module):
    """``out × in`` linear layer made of ``block_size``-square circulant blocks.

    Args:
        in_features, out_features: the layer's shape.
        block_size: ``b``; default ``max(in, out)``: one circulant matrix, cut.
        bias: add a bias of ``out_features``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        block_size: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError("in_features and out_features must be >= 1")
        b = block_size if block_size is not None else max(in_features, out_features)
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ValueError(f"block_size must be an int >= 1, got {block_size!r}")
        self.in_features, self.out_features, self.block_size = (
            in_features,
            out_features,
            b,
        )
        p, q = math.ceil(in_features / b), math.ceil(out_features / b)
        bound = 1 / math.sqrt(in_features)  # nn.Linear's range for each entry
        self.weight = nn.Parameter(torch.empty(q, p, b).uniform_(-bound, bound))
        self.bias = (
            nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
            if bias
            else None
        )

    @classmethod
    def from_dense(cls, layer: nn.Linear, block_size: int) -> CirculantLinear:
        """The block-circulant layer nearest to a trained ``nn.Linear`` (least squares).

        In each block, ``c_k`` is the mean of the entries on the ``k``-th wrapped
        diagonal ``(i - j) mod b = k`` (entries of the zero padding excluded): the
        orthogonal projection of ``W`` onto block-circulant matrices.
        """
        if not isinstance(layer, nn.Linear):
            raise TypeError(f"layer must be nn.Linear, got {type(layer).__name__}")
        out = cls(layer.in_features, layer.out_features, block_size=block_size,
                  bias=layer.bias is not None)  # fmt: skip
        q, p, b = out.weight.shape
        w = torch.zeros(q * b, p * b)
        seen = torch.zeros(q * b, p * b)
        w[: layer.out_features, : layer.in_features] = layer.weight.detach()
        seen[: layer.out_features, : layer.in_features] = 1
        i = torch.arange(b)
        diag = ((i[:, None] - i[None, :]) % b).flatten()  # (b*b,) wrapped diagonal

        def per_diagonal(m: Tensor) -> Tensor:
            blocks = m.reshape(q, b, p, b).permute(0, 2, 1, 3).reshape(q, p, b * b)
            return torch.zeros(q, p, b).index_add_(2, diag, blocks)

        with torch.no_grad():
            out.weight.copy_(per_diagonal(w) / per_diagonal(seen).clamp(min=1))
            if layer.bias is not None:
                out.bias.copy_(layer.bias.detach())
        return out

    def forward(self, x: Tensor) -> Tensor:
        q, p, b = self.weight.shape
        lead = x.shape[:-1]
        x = nn.functional.pad(x, (0, p * b - self.in_features)).reshape(-1, p, b)
        y = torch.einsum("npf,qpf->nqf", torch.fft.rfft(x), torch.fft.rfft(self.weight))
        y = torch.fft.irfft(y, n=b).reshape(-1, q * b)[:, : self.out_features]
        y = y.reshape(*lead, self.out_features)
        return y + self.bias if self.bias is not None else y

    def dense_weight(self) -> Tensor:
        """The ``out × in`` matrix the layer computes with (for checks and export)."""
        q, p, b = self.weight.shape
        i = torch.arange(b)
        blocks = self.weight[:, :, (i[:, None] - i[None, :]) % b]  # (q, p, b, b)
        full = blocks.permute(0, 2, 1, 3).reshape(q * b, p * b)
        return full[: self.out_features, : self.in_features]

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"block_size={self.block_size}")  # fmt: skip


__all__ = ["CirculantLinear"]
