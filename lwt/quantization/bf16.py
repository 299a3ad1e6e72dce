"""bfloat16 inference (bf16 推論): weights and activations in 16 bits, no calibration.

bfloat16 keeps float32's sign and 8-bit exponent and cuts the mantissa to 7 bits:
the same range (no overflow, no scale to calibrate), about 3 significant decimal
digits, ``x_bf16 = round(x)`` to the nearest of 2^8 values per power of two. Trained
networks tolerate that rounding at inference, so bf16 is nearly lossless — but measure
it, never assume it. It is fast only where the CPU has bf16 arithmetic (AVX-512 BF16,
AMX-BF16; see ``lwt.cpu``); elsewhere it is emulated and can be slower than float32.
Convolutions run fastest in channels-last memory layout (NHWC) on such CPUs.

Reference: Kalamkar et al. A Study of BFLOAT16 for Deep Learning Training. 2019.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn


class Bf16Model(nn.Module):
    """A bfloat16, channels-last copy of a model behind a float32 interface:
    ``forward(x)`` casts the input to bf16 and the logits back to float32."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        m = copy.deepcopy(model).cpu().eval().to(torch.bfloat16)
        self.model = m.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> Tensor:
        x = x.to(torch.bfloat16)
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x).float()


def to_bfloat16(model: nn.Module) -> Bf16Model:
    """``Bf16Model(model)``: a bf16 copy for inference (``model`` is left as it is)."""
    return Bf16Model(model)


__all__ = ["Bf16Model", "to_bfloat16"]
