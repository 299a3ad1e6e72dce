"""Integer-only inference of one layer: what an int8 kernel really computes.

Fake quantization (``lwt.quantization``) simulates int8 in float. An integer engine
computes a conv/linear layer from int8 inputs and weights with int32 accumulators and
rescales to the output's 8-bit grid with a fixed-point multiplier (Jacob et al. 2018,
Sec. 2.2-2.4). This module is that computation, written with integer tensors, as a
reference that the fake-quant model must match within one level (1 LSB).

Reference: Jacob et al. Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference. CVPR 2018.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .fake_quant import FakeQuant
from .primitives import qrange, quantize

Layer = nn.Conv2d | nn.Linear


def quantized_weight(layer: Layer) -> tuple[Tensor, FakeQuant]:
    """Integer weight of a layer from ``quantize_model``, and its quantizer."""
    if not parametrize.is_parametrized(layer, "weight"):
        raise TypeError("layer has no fake-quantized weight: use quantize_model")
    w = layer.parametrizations.weight.original.detach()
    fq = layer.parametrizations.weight[0]
    fq(w)  # refresh the dynamic scale
    q = quantize(w, fq.scale, fq.zero_point, bits=fq.bits, symmetric=True, axis=fq.axis)
    return q, fq


def fixed_point(mult: Tensor) -> tuple[Tensor, Tensor]:
    """``M = M0 · 2^-n`` with ``M0`` a 31-bit integer (Jacob et al. 2018, eq. 6):
    ``frexp`` gives ``M = m · 2^e`` with ``m`` in [0.5, 1); ``M0 = round(m · 2^31)``,
    ``n = 31 − e``. Returns ``(M0, n)`` as int64 tensors of ``mult``'s shape."""
    mant, exp = torch.frexp(torch.as_tensor(mult, dtype=torch.float64))
    return torch.round(mant * 2**31).long(), (31 - exp).long()


def requantize(
    acc: Tensor, mult: Tensor | float, zero_point: int, bits: int, *, relu: bool = False
) -> Tensor:
    """Integer rescaling of int32 accumulators to the output grid:
    ``y = clamp(Z_y + round(M · acc))``, with ``M`` applied as ``M0 · 2^-n``
    (:func:`fixed_point`): ``round(M · acc) = (acc · M0 + 2^(n−1)) >> n`` (ties up).
    ``mult`` broadcasts against ``acc``; ``relu`` clamps at ``Z_y`` (real 0).
    """
    m0, shift = fixed_point(mult)
    y = (acc.long() * m0 + 2 ** (shift - 1)) >> shift  # round(M·acc)
    qmin, qmax = qrange(bits)
    return (y + zero_point).clamp(max(qmin, zero_point) if relu else qmin, qmax)


def integer_forward(
    layer: Layer,
    x_q: Tensor,
    x_quant: FakeQuant,
    y_quant: FakeQuant,
    relu: bool = False,
    *,
    rescale: Callable[[Tensor, float, int], Tensor] | None = None,
) -> Tensor:
    """Integer-only inference of one prepared conv/linear layer (Jacob et al. 2018,
    Sec. 2.2-2.4): int8 inputs and weights, int32 accumulators, integer output.

    ``acc_c = Σ_k (x_q,k - Z_x) w_q,ck + b_q,c`` with the bias in int32,
    ``b_q,c = round(b_c / (S_x S_w,c))``; then ``y_q,c = clamp(Z_y + round(M_c acc_c))``
    where ``M_c = S_x S_w,c / S_y = M0_c 2^-n_c`` is applied as a 31-bit fixed-point
    multiplier ``M0_c`` and a right shift. ``relu`` clamps at ``Z_y`` (real 0).

    Args:
        layer: a Conv2d/Linear from ``quantize_model``.
        x_q: integer input, ``(N, C, H, W)`` or ``(N, F)``.
        x_quant, y_quant: the frozen activation quantizers before and after.
        relu: a ReLU follows the layer.
        rescale: your own requantization ``(acc, M, Z_y) -> uint8 codes``, called once
            per output channel instead of :func:`requantize` (notebook 02's exercise).
    """
    w_q, w_fq = quantized_weight(layer)
    x = x_q.to(torch.int64) - int(x_quant.zero_point.item())
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1 or layer.padding_mode != "zeros":
            raise TypeError("integer_forward: plain zero-padded convs only")
        n, _, h, _ = x.shape
        cols = nn.functional.unfold(  # (N, C·kh·kw, L), exact small integers
            x.double(), layer.kernel_size, layer.dilation, layer.padding, layer.stride
        ).to(torch.int64)
        acc = w_q.reshape(w_q.shape[0], -1).to(torch.int64) @ cols  # (N, C_out, L)
    else:
        acc = (x @ w_q.to(torch.int64).T)[..., None]  # (N, C_out, 1)
    s_xw = x_quant.scale.double() * w_fq.scale.double()  # (C_out,)
    if layer.bias is not None:
        acc = acc + torch.round(layer.bias.detach().double() / s_xw).long()[:, None]
    mult = (s_xw / y_quant.scale.double())[:, None]  # (C_out, 1)
    zp = int(y_quant.zero_point.item())
    if rescale is None:
        y = requantize(acc, mult, zp, y_quant.bits, relu=relu)
    else:
        y = torch.stack(
            [torch.as_tensor(rescale(acc[:, c], float(mult[c]), zp)).long()
             for c in range(acc.shape[1])], 1)  # fmt: skip
        y = y.clamp(min=zp) if relu else y
    if isinstance(layer, nn.Conv2d):
        pad, dil, k, st = (
            layer.padding[0],
            layer.dilation[0],
            layer.kernel_size[0],
            layer.stride[0],
        )
        ho = (h + 2 * pad - dil * (k - 1) - 1) // st + 1  # output height
        return y.reshape(n, -1, ho, y.shape[-1] // ho).to(torch.int32)
    return y[..., 0].to(torch.int32)
