"""Quantization (量子化): fewer bits for weights and activations.

- ``primitives``: ``r = S (q - Z)``; ``qrange``, ``qparams``, ``quantize``,
  ``dequantize``, ``fake_quantize`` (straight-through estimator).
- ``observers``: calibration ranges (min-max, moving average, percentile, MSE).
- ``fake_quant``: ``FakeQuant``, BatchNorm folding, ``quantize_model`` (PTQ/QAT
  preparation with ``torch.fx``), ``calibrate``, ``qat``, ``to_float`` (the float
  model an int8 converter takes).
- ``bf16``: ``to_bfloat16``, a bfloat16 channels-last copy for inference.
- ``integer``: integer-only reference of one conv/linear layer; ``fixed_point``
  (``M = M0 · 2^-n``) and ``requantize`` (int32 accumulators to the output grid).

Copy this folder into your project to use it: it depends only on torch.
"""

from .bf16 import Bf16Model, to_bfloat16
from .fake_quant import (
    FakeQuant,
    activation_quantizers,
    calibrate,
    fold_batchnorm,
    layer_quantizers,
    qat,
    quantize_model,
    set_mode,
    to_float,
)
from .integer import (
    fixed_point,
    integer_forward,
    quantized_weight,
    requantize,
)
from .observers import OBSERVERS, Observer, make_observer
from .primitives import (
    dequantize,
    fake_quantize,
    inputs_of,
    qparams,
    qrange,
    quantize,
)

__all__ = [
    "OBSERVERS",
    "Bf16Model",
    "FakeQuant",
    "Observer",
    "activation_quantizers",
    "calibrate",
    "dequantize",
    "fake_quantize",
    "fixed_point",
    "fold_batchnorm",
    "inputs_of",
    "integer_forward",
    "layer_quantizers",
    "make_observer",
    "qat",
    "qparams",
    "qrange",
    "quantize",
    "quantize_model",
    "quantized_weight",
    "requantize",
    "set_mode",
    "to_bfloat16",
    "to_float",
]
