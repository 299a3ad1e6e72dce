"""GPTQ (Frantar et al. 2023): quantize a layer's weights column by column, each
rounding error spread over the columns not yet quantized, using the inverse Hessian of
the layer's reconstruction error on calibration inputs.

Objective per layer: ``min_Ŵ ||W X − Ŵ X||²`` with ``H = 2 X Xᵀ / n``. Quantizing column
``j`` to ``q_j`` (the grid of ``groupwise``) and updating the remaining columns

    δ = (w_j − q_j) / [H⁻¹]_jj,     W_{:, j+1:} −= δ · [H⁻¹]_{j, j+1:}

is the optimal brain surgeon step (Hassibi & Stork 1993) restricted to one column at a
time. As in the paper: ``H⁻¹`` through a Cholesky factor (numerically stable), damping
``λ = damp · mean(diag H)`` added to the diagonal, inputs that are always zero dropped,
and lazy batch updates (columns in blocks of ``block``; the rest of the matrix is
updated once per block). A group's scale and zero are set from the (already updated)
weights when its first column is reached.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .calibration import prepare
from .groupwise import check_bits, check_group, dequantize_groups, group_params


def gptq_quantize(
    weight: Tensor,
    hessian: Tensor,
    bits: int,
    group_size: int,
    *,
    damp: float = 0.01,
    block: int = 128,
    symmetric: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """GPTQ of one weight matrix ``(rows, cols)`` with ``H (cols, cols)``.

    Returns:
        ``(ŵ, codes, scale, zero)`` as :func:`groupwise.rtn` does (the input is not
        changed).
    """
    check_bits(bits)
    rows, cols = weight.shape
    check_group(cols, group_size)
    if hessian.shape != (cols, cols):
        raise ValueError(
            f"hessian must be ({cols}, {cols}), got {tuple(hessian.shape)}"
        )
    block = max(group_size, block - block % group_size)  # whole groups per block
    w, hinv = prepare(weight, hessian, damp)
    qmax = 2**bits - 1
    codes = torch.zeros(rows, cols, dtype=torch.long)
    scale = torch.zeros(rows, cols // group_size)
    zero = torch.zeros(rows, cols // group_size)
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        w1, err = w[:, i1:i2].clone(), torch.zeros(rows, i2 - i1)
        h1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            if col % group_size == 0:
                k = col // group_size
                s, z = group_params(w1[:, i : i + group_size], bits, group_size,
                                    symmetric=symmetric)  # fmt: skip
                scale[:, k], zero[:, k] = s[:, 0], z[:, 0]
            k = col // group_size
            q = (torch.round(w1[:, i] / scale[:, k]) + zero[:, k]).clamp(0, qmax)
            codes[:, col] = q.long()
            deq = (q - zero[:, k]) * scale[:, k]
            e = (w1[:, i] - deq) / h1[i, i]
            w1[:, i:] -= e[:, None] * h1[i, i:][None, :]
            err[:, i] = e
        w[:, i2:] -= err @ hinv[i1:i2, i2:]
    return dequantize_groups(codes, scale, zero, group_size), codes, scale, zero


def layer_error(weight: Tensor, approx: Tensor, hessian: Tensor) -> float:
    """The layer's reconstruction error on its calibration inputs,
    ``||W X − Ŵ X||² / n = ½ · tr(Δ H Δᵀ)`` with ``Δ = W − Ŵ``."""
    d = weight.detach().float() - approx.detach().float()
    return float(0.5 * torch.einsum("ij,jk,ik->", d, hessian.float(), d))
