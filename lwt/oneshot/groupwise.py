"""Weight-only group-wise quantization (グループ単位の量子化): one scale and zero point
per group of ``g`` input channels of each output row.

For row ``i`` and group ``k`` (columns ``k·g … k·g + g − 1``), asymmetric ``b`` bits::

    S = (max − min) / (2^b − 1),   Z = round(−min / S)
    q = clamp(round(w / S) + Z, 0, 2^b − 1),   ŵ = S · (q − Z)

(symmetric: ``S = max|w| / (2^(b−1) − 1)``, ``Z = 2^(b−1)``, the same unsigned codes).
Round-to-nearest (RTN) rounds every weight on its own; GPTQ (``gptq.py``) uses the same
grid but rounds column by column with error feedback. A group's range is that of its
own weights, so one outlier spoils only its group (Dettmers & Zettlemoyer 2023; the
GPTQ and AWQ papers quantize LLMs this way with ``g = 128``).

Stored size: ``b`` bits per weight, packed (``pack_codes``), plus an fp16 scale and a
``b``-bit zero per group: ``b + (16 + b) / g`` bits per weight.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def check_bits(bits: int) -> None:
    """``bits`` must be an int in [2, 8] (ValueError / TypeError otherwise)."""
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise TypeError(f"bits must be an int in [2, 8], got {bits!r}")
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be in [2, 8], got {bits}")


def check_group(columns: int, group_size: int) -> None:
    """``group_size`` must be a positive int that divides ``columns``."""
    if (
        isinstance(group_size, bool)
        or not isinstance(group_size, int)
        or group_size < 1
    ):
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    if columns % group_size:
        raise ValueError(f"group_size {group_size} does not divide the {columns} input "
                         f"channels; choose a divisor of {columns}")  # fmt: skip


def group_params(
    w: Tensor, bits: int, group_size: int, *, symmetric: bool = False
) -> tuple[Tensor, Tensor]:
    """Scale and zero point ``(rows, cols / g)`` of each group of ``w (rows, cols)``."""
    check_bits(bits)
    check_group(w.shape[1], group_size)
    g = w.detach().float().reshape(w.shape[0], -1, group_size)
    qmax = 2**bits - 1
    if symmetric:
        scale = g.abs().amax(-1) / (2 ** (bits - 1) - 1)
        zero = torch.full_like(scale, 2 ** (bits - 1))
    else:
        lo, hi = g.amin(-1).clamp(max=0), g.amax(-1).clamp(min=0)
        scale = (hi - lo) / qmax
        zero = torch.round(-lo / scale.clamp(min=1e-12)).clamp(0, qmax)
    return scale.clamp(min=1e-12), zero


def quantize_groups(
    w: Tensor, scale: Tensor, zero: Tensor, bits: int, group_size: int
) -> Tensor:
    """Integer codes ``clamp(round(w / S) + Z, 0, 2^b − 1)`` (int64, shape of ``w``)."""
    g = w.float().reshape(w.shape[0], -1, group_size)
    q = torch.round(g / scale[..., None]) + zero[..., None]
    return q.clamp(0, 2**bits - 1).reshape(w.shape).long()


def dequantize_groups(
    codes: Tensor, scale: Tensor, zero: Tensor, group_size: int
) -> Tensor:
    """``ŵ = S · (q − Z)`` (float32, shape of ``codes``)."""
    q = codes.float().reshape(codes.shape[0], -1, group_size)
    return ((q - zero[..., None]) * scale[..., None]).reshape(codes.shape)


def rtn(
    w: Tensor, bits: int, group_size: int, *, symmetric: bool = False
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Round-to-nearest group-wise quantization: ``(ŵ, codes, scale, zero)``."""
    scale, zero = group_params(w, bits, group_size, symmetric=symmetric)
    codes = quantize_groups(w, scale, zero, bits, group_size)
    return dequantize_groups(codes, scale, zero, group_size), codes, scale, zero


def pack_codes(codes: Tensor, bits: int) -> bytes:
    """Codes in ``[0, 2^b)`` as a little-endian bit stream: ``ceil(n·b / 8)`` bytes
    (two 4-bit codes per byte)."""
    check_bits(bits)
    flat = codes.flatten().long()
    if flat.numel() and (flat.min() < 0 or flat.max() >= 2**bits):
        raise ValueError(f"codes must lie in [0, {2**bits - 1}] for {bits} bits")
    bitstream = ((flat[:, None] >> torch.arange(bits)) & 1).flatten()
    pad = (-bitstream.numel()) % 8
    bitstream = torch.cat([bitstream, bitstream.new_zeros(pad)]).reshape(-1, 8)
    return bytes((bitstream << torch.arange(8)).sum(1).to(torch.uint8).tolist())


def unpack_codes(blob: bytes, bits: int, n: int) -> Tensor:
    """Inverse of :func:`pack_codes`: the first ``n`` codes (int64)."""
    check_bits(bits)
    need = math.ceil(n * bits / 8)
    if len(blob) < need:
        raise ValueError(f"{n} codes of {bits} bits need {need} bytes, got {len(blob)}")
    data = torch.tensor(list(blob[:need]), dtype=torch.long)
    bitstream = ((data[:, None] >> torch.arange(8)) & 1).flatten()[: n * bits]
    return (bitstream.reshape(n, bits) << torch.arange(bits)).sum(1)


def packed_bytes(rows: int, columns: int, bits: int, group_size: int) -> int:
    """Bytes of one layer stored packed: codes, fp16 scales and ``b``-bit zeros."""
    groups = rows * columns // group_size
    return (
        math.ceil(rows * columns * bits / 8) + 2 * groups + math.ceil(groups * bits / 8)
    )
