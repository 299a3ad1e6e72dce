"""One-shot pruning of linear layers from calibration statistics, without retraining:
magnitude, Wanda and SparseGPT; unstructured or N:M semi-structured
(2:4).

Scores, compared **within each output row** (as Wanda does; ``W`` is rows x cols)::

    magnitude:  S_ij = |W_ij|
    Wanda:      S_ij = |W_ij| · ||X_j||₂      (Sun et al. 2024)

An ``N:M`` mask keeps the ``N`` highest scores in every group of ``M`` consecutive input
weights of a row (2:4: half, in the pattern NVIDIA's sparse tensor cores run; Mishra
et al. 2021). SparseGPT (Frantar & Alistarh 2023) chooses the mask block by block by
``w² / [H⁻¹]_jj²`` and, like GPTQ, updates the weights not yet visited so that the
layer's output on the calibration inputs changes as little as possible
(``H = 2 X Xᵀ / n``, the same Cholesky-based ``H⁻¹`` and damping).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .calibration import prepare


def check_sparsity(
    amount: float | None, n: int | None, m: int | None, cols: int
) -> None:
    """``amount`` in [0, 1) or integers ``0 < n < m`` with ``m`` dividing ``cols``."""
    if (n is None) != (m is None):
        raise ValueError("pass n and m together (n:m sparsity), or neither")
    if n is not None:
        if type(n) is not int or type(m) is not int or not 0 < n < m:
            raise ValueError(f"n:m needs integers 0 < n < m, got {n!r}:{m!r}")
        if cols % m:
            raise ValueError(f"n:m sparsity needs the input width ({cols}) divisible "
                             f"by m = {m}")  # fmt: skip
        if amount is not None:
            raise ValueError("pass amount (unstructured) or n:m, not both")
    elif (
        isinstance(amount, bool)
        or not isinstance(amount, (int, float))
        or not 0 <= amount < 1
    ):
        raise ValueError(f"amount must be a fraction in [0, 1), got {amount!r}")


def row_mask(
    scores: Tensor, *, amount: float | None = None, n: int | None = None,
    m: int | None = None,
) -> Tensor:  # fmt: skip
    """Boolean keep-mask of ``scores (rows, cols)``: in each row, drop the
    ``round(amount · cols)`` lowest (ties: lower index dropped first), or keep the ``n``
    highest of every ``m`` consecutive entries."""
    rows, cols = scores.shape
    check_sparsity(amount, n, m, cols)
    if n is not None:
        groups = scores.reshape(rows, cols // m, m)
        top = groups.topk(n, dim=-1).indices
        keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, top, True)
        return keep.reshape(rows, cols)
    k = round(amount * cols)
    keep = torch.ones(rows, cols, dtype=torch.bool)
    if k:
        drop = torch.argsort(scores, dim=1, stable=True)[:, :k]
        keep.scatter_(1, drop, False)
    return keep


def wanda_scores(weight: Tensor, norms: Tensor) -> Tensor:
    """``|W_ij| · ||X_j||₂`` (Wanda); ``norms`` are the input features' L2 norms."""
    if norms.shape != (weight.shape[1],):
        raise ValueError(
            f"norms must have {weight.shape[1]} entries, got {tuple(norms.shape)}"
        )
    return weight.detach().abs().float() * norms.float()[None, :]


def sparsegpt(
    weight: Tensor,
    hessian: Tensor,
    *,
    amount: float | None = None,
    n: int | None = None,
    m: int | None = None,
    damp: float = 0.01,
    block: int = 128,
) -> Tensor:
    """SparseGPT of one weight matrix: the pruned, updated weights (a new tensor).

    Unstructured: in each block of ``block`` columns, the ``amount`` fraction with the
    lowest ``w² / [H⁻¹]_jj²`` is pruned (over the whole block); ``n:m``: in each group
    of ``m`` columns, each row keeps its ``n`` highest. Every pruned weight's error
    ``(w_j − 0) / [H⁻¹]_jj`` is spread over the columns to its right.
    """
    rows, cols = weight.shape
    check_sparsity(amount, n, m, cols)
    if hessian.shape != (cols, cols):
        raise ValueError(
            f"hessian must be ({cols}, {cols}), got {tuple(hessian.shape)}"
        )
    if m is not None:
        block = max(m, block - block % m)
    w, hinv = prepare(weight, hessian, damp)
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        w1, err = w[:, i1:i2].clone(), torch.zeros(rows, i2 - i1)
        h1 = hinv[i1:i2, i1:i2]
        d = torch.diag(h1)
        prune = torch.zeros_like(w1, dtype=torch.bool)
        if n is None:
            s = w1**2 / d[None, :] ** 2
            k = round(amount * s.numel())
            if k:
                prune.view(-1)[torch.argsort(s.flatten(), stable=True)[:k]] = True
        for i in range(i2 - i1):
            if n is not None and i % m == 0:
                s = w1[:, i : i + m] ** 2 / d[None, i : i + m] ** 2
                low = s.topk(m - n, dim=1, largest=False).indices
                prune[:, i : i + m].scatter_(1, low, True)
            q = w1[:, i].clone()
            q[prune[:, i]] = 0
            e = (w1[:, i] - q) / h1[i, i]
            w1[:, i:] -= e[:, None] * h1[i, i:][None, :]
            w1[:, i] = q
            err[:, i] = e
        w[:, i1:i2] = w1
        w[:, i2:] -= err @ hinv[i1:i2, i2:]
    return w
