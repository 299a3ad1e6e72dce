"""Relative sparse indices (相対インデックス) with filler entries.

Deep Compression (Han, Mao, Dally. ICLR 2016, §2, Fig. 2) stores a pruned layer as
its nonzero weights plus, for each, the *difference* of its position from the
previous one, in a fixed number of bits ``g``; a gap too large for ``g`` bits is
bridged by *filler* entries. Here an entry's symbol is the number of zeros skipped
before it, ``0 … M-1`` with ``M = 2^g - 1``; the symbol ``M`` is a filler: it skips
``M`` zeros and stores no weight. So the ``j``-th stored weight sits at

    p_j = p_{j-1} + 1 + r_j      (r_j: the zeros run before it, fillers included),

and a tensor with ``n`` nonzeros and runs ``r`` costs ``n + Σ_j ⌊r_j / M⌋`` symbols.
Trailing zeros need no symbol: the shape is stored.
"""

from __future__ import annotations

import numpy as np


def _filler(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
        raise ValueError(f"index bits must be an int in 1..16, got {bits!r}")
    return 2**bits - 1


def relative_indices(nonzero: np.ndarray, bits: int) -> np.ndarray:
    """Symbols of the flat boolean ``nonzero`` mask: runs of zeros and fillers.

    With ``bits = 1`` (``M = 1``) every zero is a filler and every weight a 0.
    """
    big = _filler(bits)
    pos = np.flatnonzero(np.asarray(nonzero).ravel())
    runs = np.diff(pos, prepend=-1) - 1
    fillers = runs // big
    out = np.full(int(fillers.sum()) + pos.size, big, dtype=np.int64)
    out[np.cumsum(fillers + 1) - 1] = runs - fillers * big
    return out


def positions(symbols: np.ndarray, bits: int, size: int) -> np.ndarray:
    """Flat positions of the stored weights (inverse of :func:`relative_indices`).

    Raises:
        ValueError: a symbol outside ``0 … 2^bits - 1`` or a position past ``size``.
    """
    big = _filler(bits)
    s = np.asarray(symbols, dtype=np.int64)
    if s.size and (s.min() < 0 or s.max() > big):
        raise ValueError(f"index symbols must be in 0..{big}")
    real = s != big
    ends = np.cumsum(s + real) - 1  # the slot each entry ends on
    pos = ends[real]
    if pos.size and pos[-1] >= size:
        raise ValueError(f"indices point past the tensor's {size} elements")
    return pos


def count_fillers(nonzero: np.ndarray, bits: int) -> int:
    """How many filler entries :func:`relative_indices` needs at this width."""
    pos = np.flatnonzero(np.asarray(nonzero).ravel())
    return int(((np.diff(pos, prepend=-1) - 1) // _filler(bits)).sum())


__all__ = ["count_fillers", "positions", "relative_indices"]
