"""Weight-only group-quantized layers (W4A16 in LLM terms): integer codes in memory,
dequantized in the forward.

:class:`GroupQuantized` replaces an ``nn.Linear`` or ``nn.Conv2d``: it keeps the integer
codes (one ``uint8`` per weight in memory), an fp16 scale and an integer zero per group,
an optional fp16 per-input-channel scale ``s`` (AWQ) and the float bias, and computes

    Ŵ = S · (q − Z) / s        (a group of ``g`` inputs of one output row shares S, Z)

before calling ``F.linear`` / ``F.conv2d``: weight-only quantization saves memory and
bytes, not arithmetic. A convolution's row is its ``in · kh · kw`` inputs, grouped in
that order. ``packed.py`` stores these layers in bytes that are their real size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .groupwise import check_bits, check_group, dequantize_groups


class GroupQuantized(nn.Module):
    """A ``Linear`` or ``Conv2d`` whose weight is stored as group-wise integer codes.

    Args:
        layer: the float layer (its bias and, for a conv, its geometry are kept).
        codes: integer codes ``(out, in·kh·kw)`` in ``[0, 2^bits)``.
        scale, zero: ``(out, columns / group_size)`` per group.
        bits, group_size: the grid.
        in_scale: AWQ's per-input-channel ``s`` (Linear only), or None.
    """

    def __init__(
        self,
        layer: nn.Linear | nn.Conv2d,
        codes: Tensor,
        scale: Tensor,
        zero: Tensor,
        *,
        bits: int,
        group_size: int,
        in_scale: Tensor | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(layer, (nn.Linear, nn.Conv2d)):
            raise TypeError(f"layer must be nn.Linear or nn.Conv2d, got {type(layer)}")
        check_bits(bits)
        rows, cols = layer.weight.shape[0], layer.weight[0].numel()
        check_group(cols, group_size)
        if tuple(codes.shape) != (rows, cols):
            raise ValueError(
                f"codes must be ({rows}, {cols}), got {tuple(codes.shape)}"
            )
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= 2**bits):
            raise ValueError(f"codes must lie in [0, {2**bits - 1}] for {bits} bits")
        groups = (rows, cols // group_size)
        for what, t in (("scale", scale), ("zero", zero)):
            if tuple(t.shape) != groups:
                raise ValueError(f"{what} must be {groups}, got {tuple(t.shape)}")
        if in_scale is not None and not isinstance(layer, nn.Linear):
            raise ValueError("in_scale (AWQ) applies to nn.Linear layers only")
        if in_scale is not None and tuple(in_scale.shape) != (cols,):
            raise ValueError(f"in_scale must be ({cols},), got {tuple(in_scale.shape)}")
        self.kind = "linear" if isinstance(layer, nn.Linear) else "conv2d"
        self.bits, self.group_size = bits, group_size
        self.shape = tuple(layer.weight.shape)
        if self.kind == "conv2d":
            self.conv = {
                "stride": layer.stride,
                "padding": layer.padding,
                "dilation": layer.dilation,
                "groups": layer.groups,
            }
        self.register_buffer("codes", codes.to(torch.uint8))
        self.register_buffer("scale", scale.to(torch.float16))
        self.register_buffer("zero", zero.to(torch.uint8))
        self.register_buffer(
            "in_scale", None if in_scale is None else in_scale.to(torch.float16)
        )
        bias = layer.bias
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    def dequantized(self) -> Tensor:
        """``Ŵ = S (q − Z) / s`` in float32, in the layer's weight shape."""
        w = dequantize_groups(
            self.codes, self.scale.float(), self.zero.float(), self.group_size
        )
        if self.in_scale is not None:
            w = w / self.in_scale.float()[None, :]
        return w.reshape(self.shape)

    def forward(self, x: Tensor) -> Tensor:
        w = self.dequantized().to(x.dtype)
        if self.kind == "linear":
            return F.linear(x, w, self.bias)
        return F.conv2d(x, w, self.bias, **self.conv)

    def extra_repr(self) -> str:
        return (
            f"{self.kind} {self.shape}, bits={self.bits}, group_size={self.group_size}"
        )
