"""Canonical Huffman coding (ハフマン符号) and fixed-width bit packing.

Huffman (1952): merge the two least frequent symbols until one tree is left; a
symbol's code length is its depth. The code is optimal among prefix codes: the mean
length ``L = Σ p_s ℓ_s`` satisfies ``H ≤ L < H + 1`` with ``H = -Σ p_s log2 p_s``.
A *canonical* code (as in DEFLATE, RFC 1951 §3.2.2) is fixed by the lengths alone:
symbols sorted by (length, symbol) take consecutive codes, so a file stores only the
lengths, never the tree.

Deep Compression (Han, Mao, Dally. ICLR 2016, §4) Huffman-codes the cluster indices
and the relative sparse indices of every layer: they are far from uniform.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence

import numpy as np


def code_lengths(counts: Sequence[int]) -> list[int]:
    """Huffman code length of each symbol ``0 … len(counts)-1`` (0: unused symbol).

    ``counts[s]`` is how often symbol ``s`` occurs. A lone used symbol gets length 1.
    Ties merge the earliest-made node first, so the result is deterministic.
    """
    if any(int(c) < 0 for c in counts):
        raise ValueError("counts must be >= 0")
    used = [(int(c), s) for s, c in enumerate(counts) if c > 0]
    lengths = [0] * len(counts)
    if len(used) == 1:
        lengths[used[0][1]] = 1
    if len(used) <= 1:
        return lengths
    order = itertools.count()
    heap = [(c, next(order), [s]) for c, s in used]
    heapq.heapify(heap)
    while len(heap) > 1:
        c1, _, a = heapq.heappop(heap)
        c2, _, b = heapq.heappop(heap)
        for s in a + b:  # every symbol under the new node sinks one level
            lengths[s] += 1
        heapq.heappush(heap, (c1 + c2, next(order), a + b))
    return lengths


def canonical_codes(lengths: Sequence[int]) -> list[int]:
    """The canonical code of each symbol (an integer whose ``lengths[s]`` low bits,
    most significant first, are the codeword; 0 for unused symbols)."""
    codes = [0] * len(lengths)
    code, prev = 0, 0
    for length, s in sorted((ln, s) for s, ln in enumerate(lengths) if ln > 0):
        code <<= length - prev
        codes[s], prev = code, length
        code += 1
    return codes


def is_prefix_free(lengths: Sequence[int]) -> bool:
    """True when no used codeword of the canonical code is a prefix of another."""
    words = sorted(
        format(c, f"0{ln}b")
        for c, ln in zip(canonical_codes(lengths), lengths, strict=True)
        if ln > 0
    )
    return all(not b.startswith(a) for a, b in itertools.pairwise(words))


def _pack(bits: np.ndarray) -> bytes:
    return np.packbits(bits.astype(np.uint8)).tobytes()


def pack_fixed(symbols: np.ndarray, width: int) -> bytes:
    """Each symbol in ``width`` bits, most significant first, padded to a byte."""
    s = np.asarray(symbols, dtype=np.int64)
    if not 1 <= width <= 32 or (s.size and (s.min() < 0 or s.max() >> width)):
        raise ValueError(f"symbols do not fit in width={width} bits")
    shifts = np.arange(width - 1, -1, -1)
    return _pack((s[:, None] >> shifts) & 1)


def unpack_fixed(payload: bytes, width: int, n: int) -> np.ndarray:
    """Inverse of :func:`pack_fixed`: ``n`` symbols of ``width`` bits."""
    bits = np.unpackbits(np.frombuffer(payload, np.uint8))
    if bits.size < n * width:
        raise ValueError("bitstream shorter than its symbol count")
    rows = bits[: n * width].reshape(n, width).astype(np.int64)
    return rows @ (1 << np.arange(width - 1, -1, -1, dtype=np.int64))


def encode(symbols: np.ndarray, lengths: Sequence[int]) -> bytes:
    """The concatenated canonical codewords of ``symbols``, padded to a byte."""
    s = np.asarray(symbols, dtype=np.int64)
    ln = np.asarray(lengths, dtype=np.int64)
    if s.size and (s.min() < 0 or s.max() >= ln.size or (ln[s] == 0).any()):
        raise ValueError("a symbol has no code (count 0 when the code was built)")
    if not s.size:
        return b""
    width = int(ln[s].max())
    codes = np.asarray(canonical_codes(lengths), dtype=np.int64)[s]
    bits = (codes[:, None] >> np.arange(width - 1, -1, -1)) & 1
    keep = np.arange(width) >= width - ln[s][:, None]  # right-aligned codewords
    return _pack(bits[keep])


def decode(payload: bytes, lengths: Sequence[int], n: int) -> np.ndarray:
    """Read ``n`` symbols of the canonical code with these ``lengths``.

    Standard canonical decoding: extend the code bit by bit; at length ``ℓ`` it is a
    codeword when ``code - first[ℓ] < count[ℓ]``.
    """
    used = sorted((ln, s) for s, ln in enumerate(lengths) if ln > 0)
    if n and not used:
        raise ValueError("empty code table")
    top = used[-1][0] if used else 0
    count = [0] * (top + 1)
    for ln, _ in used:
        count[ln] += 1
    first, index, code = [0] * (top + 1), [0] * (top + 1), 0
    for ln in range(1, top + 1):
        code = (code + count[ln - 1]) << 1 if ln > 1 else 0
        first[ln] = code
        index[ln] = index[ln - 1] + count[ln - 1] if ln > 1 else 0
    symbols = [s for _, s in used]
    bits = np.unpackbits(np.frombuffer(payload, np.uint8)).tolist()
    out, pos, total = [], 0, len(bits)
    for _ in range(n):
        code = ln = 0
        while True:
            if pos >= total or ln >= top:
                raise ValueError("bitstream truncated or corrupted")
            code = (code << 1) | bits[pos]
            pos += 1
            ln += 1
            if code - first[ln] < count[ln]:
                out.append(symbols[index[ln] + code - first[ln]])
                break
    return np.asarray(out, dtype=np.int64)


def huffman_bits(counts: Sequence[int]) -> int:
    """Payload bits of a Huffman code for a source with these symbol counts."""
    return sum(int(c) * ln for c, ln in zip(counts, code_lengths(counts), strict=True))


__all__ = [
    "canonical_codes",
    "code_lengths",
    "decode",
    "encode",
    "huffman_bits",
    "is_prefix_free",
    "pack_fixed",
    "unpack_fixed",
]
