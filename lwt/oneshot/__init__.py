"""One-shot compression of linear layers from calibration data (lesson 08): the methods
of the LLM era, which need no retraining.

- ``calibration``: input statistics of ``nn.Linear`` layers from forward hooks (the
  Hessian ``2XXᵀ/n``, per-feature norms, ranges, mean magnitudes).
- ``groupwise``: weight-only group-wise round-to-nearest (int2–int8, a scale per group
  of ``g`` inputs) and bit packing whose bytes are the real size.
- ``gptq``: GPTQ (Frantar et al. 2023), column-by-column rounding with inverse-Hessian
  error feedback.
- ``awq``: AWQ (Lin et al. 2024), activation-aware per-channel scales searched before
  group-wise rounding.
- ``smooth``: SmoothQuant (Xiao et al. 2023), activation outliers migrated into the
  weights for W8A8, folded into the LayerNorm before.
- ``sparse``: magnitude, Wanda (Sun et al. 2024) and SparseGPT (Frantar & Alistarh
  2023), unstructured or N:M (2:4).
- ``quantized``: ``GroupQuantized`` layers (integer codes, dequantized in the forward).
- ``packed``: their file, whose bytes are the real size (``save_packed``,
  ``load_packed``, ``packed_state_dict``).
- ``w8a8``: simulated W8A8 linear layers (int8 weights per row, int8 activations per
  tensor from calibration): ``fake_w8a8``, what SmoothQuant prepares a model for.
- ``model``: the methods applied to a whole model layer by layer, in GPTQ's sequential
  order (``quantize_weights``, ``prune_oneshot``), returning a copy.

Each file depends only on torch and this folder: copy the folder.
"""

from .awq import awq_quantize, awq_scales
from .calibration import InputStats, input_stats, linear_layers, weight_layers
from .gptq import gptq_quantize, layer_error
from .groupwise import (
    dequantize_groups,
    group_params,
    pack_codes,
    packed_bytes,
    quantize_groups,
    rtn,
    unpack_codes,
)
from .model import (
    PRUNE_METHODS,
    QUANT_METHODS,
    prune_oneshot,
    quantize_weights,
)
from .packed import load_packed, packed_state_dict, save_packed, to_packed
from .quantized import GroupQuantized
from .smooth import fold_smoothing, smooth_scales
from .sparse import row_mask, sparsegpt, wanda_scores
from .w8a8 import W8A8Linear, fake_w8a8

__all__ = [
    "PRUNE_METHODS",
    "QUANT_METHODS",
    "GroupQuantized",
    "InputStats",
    "W8A8Linear",
    "load_packed",
    "packed_state_dict",
    "prune_oneshot",
    "quantize_weights",
    "save_packed",
    "weight_layers",
    "awq_quantize",
    "awq_scales",
    "fold_smoothing",
    "dequantize_groups",
    "fake_w8a8",
    "gptq_quantize",
    "group_params",
    "input_stats",
    "layer_error",
    "linear_layers",
    "pack_codes",
    "packed_bytes",
    "quantize_groups",
    "row_mask",
    "rtn",
    "smooth_scales",
    "sparsegpt",
    "to_packed",
    "unpack_codes",
    "wanda_scores",
]
