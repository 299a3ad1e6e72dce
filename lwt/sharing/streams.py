"""Symbol streams of the ``.lwtc`` format: fixed width or canonical Huffman.

A stream is ``mode u8`` (0 fixed, 1 Huffman), its symbol count u32, then ``width u8``
(fixed) or the canonical table (``max length u8``, the count of codes of each length
u16, the symbols in canonical order, u8 or u16), then the payload length u32 and the
payload. The writer keeps whichever mode is smaller, the Huffman table counted: for a
small layer the table can cost more than the code saves.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from . import huffman

FIXED, HUFFMAN = 0, 1


def _width(alphabet: int) -> int:
    return max(1, math.ceil(math.log2(alphabet)))


def _huffman_table(lengths: list[int], alphabet: int) -> bytes:
    top = max(lengths)
    counts = [sum(ln == k for ln in lengths) for k in range(1, top + 1)]
    order = [s for _, s in sorted((ln, s) for s, ln in enumerate(lengths) if ln)]
    sym = np.asarray(order, dtype=np.uint8 if alphabet <= 256 else "<u2")
    return struct.pack(f"<B{top}H", top, *counts) + sym.tobytes()


def stream_costs(symbols: np.ndarray, alphabet: int) -> dict[str, int]:
    """Bytes of a stream written at fixed width and with a Huffman code (its table
    included): ``{"fixed": …, "huffman": …, "huffman_table": …}``."""
    fixed = 10 + math.ceil(symbols.size * _width(alphabet) / 8)
    if not symbols.size:
        return {"fixed": fixed, "huffman": fixed, "huffman_table": 0}
    counts = np.bincount(symbols, minlength=alphabet).tolist()
    lengths = huffman.code_lengths(counts)
    table = (
        1
        + 2 * max(lengths)
        + sum(ln > 0 for ln in lengths) * (1 if alphabet <= 256 else 2)
    )
    coded = 9 + table + math.ceil(huffman.huffman_bits(counts) / 8)
    return {"fixed": fixed, "huffman": coded, "huffman_table": table}


def stream_bytes(symbols: np.ndarray, alphabet: int, *, use_huffman: bool) -> int:
    """Bytes :func:`write_stream` takes for ``symbols`` (without writing them)."""
    costs = stream_costs(symbols, alphabet)
    return min(costs["fixed"], costs["huffman"]) if use_huffman else costs["fixed"]


def write_stream(symbols: np.ndarray, alphabet: int, *, use_huffman: bool) -> bytes:
    """One stream of symbols in ``0 … alphabet-1``: fixed width or Huffman, whichever
    is smaller (Huffman only if ``use_huffman``)."""
    width = _width(alphabet)
    payload = huffman.pack_fixed(symbols, width)
    best = struct.pack("<BIBI", FIXED, symbols.size, width, len(payload)) + payload
    if use_huffman and symbols.size:
        lengths = huffman.code_lengths(
            np.bincount(symbols, minlength=alphabet).tolist()
        )
        payload = huffman.encode(symbols, lengths)
        table = _huffman_table(lengths, alphabet)
        coded = (struct.pack("<BI", HUFFMAN, symbols.size) + table
                 + struct.pack("<I", len(payload)) + payload)  # fmt: skip
        best = min(best, coded, key=len)
    return best


class Reader:
    """Reads a compressed file; any inconsistency is a ``ValueError``."""

    def __init__(self, blob: bytes, pos: int) -> None:
        self.blob, self.pos = blob, pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.blob):
            raise ValueError("compressed file truncated or corrupted")
        self.pos += n
        return self.blob[self.pos - n : self.pos]

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def stream(self, alphabet: int) -> tuple[np.ndarray, dict]:
        start = self.pos
        mode, n = self.unpack("<BI")
        if mode == FIXED:
            (width,) = self.unpack("<B")
            (size,) = self.unpack("<I")
            if not 1 <= width <= 32:
                raise ValueError("compressed file corrupted: bad symbol width")
            if n * width > 8 * size:  # checked before anything is allocated
                raise ValueError("compressed file corrupted: symbol count")
            out = huffman.unpack_fixed(self.take(size), width, n)
        elif mode == HUFFMAN:
            (top,) = self.unpack("<B")
            counts = self.unpack(f"<{top}H")
            wide = np.dtype(np.uint8 if alphabet <= 256 else "<u2")
            order = np.frombuffer(self.take(sum(counts) * wide.itemsize), wide)
            if order.size and int(order.max()) >= alphabet:
                raise ValueError("compressed file corrupted: code table")
            lengths = [0] * alphabet
            per_symbol = np.repeat(np.arange(1, top + 1), counts)
            for ln, s in zip(per_symbol, order.tolist(), strict=True):
                lengths[s] = int(ln)
            (size,) = self.unpack("<I")
            if n > 8 * size and any(lengths):  # every code is at least one bit
                raise ValueError("compressed file corrupted: symbol count")
            out = huffman.decode(self.take(size), lengths, n)
        else:
            raise ValueError(f"compressed file corrupted: stream mode {mode}")
        if out.size and (out.min() < 0 or out.max() >= alphabet):
            raise ValueError("compressed file corrupted: symbol outside its alphabet")
        mode_name = "huffman" if mode == HUFFMAN else "fixed"
        return out, {"mode": mode_name, "symbols": n, "bytes": self.pos - start}


__all__ = ["FIXED", "HUFFMAN", "Reader", "stream_bytes", "stream_costs", "write_stream"]
