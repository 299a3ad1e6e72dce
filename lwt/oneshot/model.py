"""One-shot compression of a whole model: this folder's per-matrix methods applied layer
by layer, without retraining.

Layers are taken in module order and each one's calibration statistics are collected
with the layers before it already compressed, so a later layer sees (and GPTQ or
SparseGPT compensate for) the earlier layers' errors: the sequential order of Frantar
et al. (GPTQ, 2023; SparseGPT, 2023). Convolutions have no statistics here and are
rounded to nearest (RTN) whichever method is chosen.

Both functions return a compressed **copy**; the model passed in is not changed, and
every argument is checked before any work is done.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from .awq import awq_quantize
from .calibration import InputStats, check_damp, input_stats, set_module, weight_layers
from .gptq import gptq_quantize
from .groupwise import check_bits, check_group, group_params, quantize_groups
from .quantized import GroupQuantized
from .sparse import check_sparsity, row_mask, sparsegpt, wanda_scores

QUANT_METHODS = ("rtn", "gptq", "awq")
PRUNE_METHODS = ("magnitude", "wanda", "sparsegpt")


def _chosen(model: nn.Module, layers: Sequence[str] | None, kinds: tuple) -> list[str]:
    found = {n: m for n, m in weight_layers(model).items() if isinstance(m, kinds)}
    names = list(found) if layers is None else list(layers)
    bad = [n for n in names if n not in found]
    if bad:
        allowed = ", ".join(k.__name__ for k in kinds)
        raise ValueError(
            f"layers {bad} are not {allowed} layers of the model (each "
            f"called through its forward); choose from {list(found)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"layers names a layer twice: {names}")
    if not names:
        raise ValueError("no layers to compress: pass layers, or a model with some")
    return names


def _stats(model: nn.Module, batches: list, name: str) -> InputStats:
    return input_stats(model, batches, [name])[name]


def _needs_batches(method: str, batches: Iterable | None) -> list:
    if batches is None:
        raise ValueError(f"method={method!r} needs calibration batches")
    batches = list(batches)
    if not batches:
        raise ValueError("batches yielded nothing: pass calibration inputs")
    return batches


def _rtn_codes(w: Tensor, bits: int, group_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """RTN codes against the scales as stored (fp16), so the file is what was chosen."""
    scale, zero = group_params(w, bits, group_size)
    scale = scale.half().float()
    return quantize_groups(w, scale, zero, bits, group_size), scale, zero


def quantize_weights(
    model: nn.Module,
    batches: Iterable | None = None,
    *,
    bits: int,
    group_size: int,
    method: str = "rtn",
    layers: Sequence[str] | None = None,
    damp: float = 0.01,
) -> nn.Module:
    """A copy of ``model`` with weight-only group-wise quantized layers
    (:class:`~.quantized.GroupQuantized`). Computed on the CPU; the new layers are put
    on each original layer's device.

    Args:
        batches: calibration inputs (or ``(input, label)`` pairs), iterated once per
            layer; needed by ``"gptq"`` and ``"awq"``.
        bits, group_size: the grid (2–8 bits; ``group_size`` divides each layer's
            inputs).
        method: ``"rtn"``, ``"gptq"`` or ``"awq"``.
        layers: paths of the Linear / Conv2d layers (default: every one whose inputs
            per output, ``in·kh·kw``, ``group_size`` divides).
        damp: GPTQ's damping, a fraction of the mean Hessian diagonal, in (0, 1).
    """
    if method not in QUANT_METHODS:
        raise ValueError(f"method must be one of {QUANT_METHODS}, got {method!r}")
    check_bits(bits)
    check_damp(damp)
    if (
        isinstance(group_size, bool)
        or not isinstance(group_size, int)
        or group_size < 1
    ):
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    if layers is None:
        layers = [n for n, m in weight_layers(model).items()
                  if m.weight[0].numel() % group_size == 0]  # fmt: skip
    names = _chosen(model, layers, (nn.Linear, nn.Conv2d))
    for n in names:
        check_group(model.get_submodule(n).weight[0].numel(), group_size)
    if method != "rtn":
        batches = _needs_batches(method, batches)
    out = copy.deepcopy(model)
    for name in names:
        layer = out.get_submodule(name)
        w = layer.weight.detach().reshape(layer.weight.shape[0], -1).float().cpu()
        s = None
        if method == "rtn" or isinstance(layer, nn.Conv2d):
            codes, scale, zero = _rtn_codes(w, bits, group_size)
        elif method == "gptq":
            stats = _stats(out, batches, name)
            _, codes, scale, zero = gptq_quantize(w, stats.hessian, bits, group_size,
                                                  damp=damp)  # fmt: skip
        else:
            stats = _stats(out, batches, name)
            _, s, _ = awq_quantize(w, stats.hessian, stats.amean, bits, group_size)
            s = s.half().float()  # as stored
            codes, scale, zero = _rtn_codes(w * s[None, :], bits, group_size)
        new = GroupQuantized(layer.cpu(), codes, scale, zero, bits=bits,
                             group_size=group_size, in_scale=s)  # fmt: skip
        set_module(out, name, new.to(model.get_submodule(name).weight.device))
    return out


@torch.no_grad()
def prune_oneshot(
    model: nn.Module,
    batches: Iterable | None = None,
    *,
    method: str = "wanda",
    amount: float | None = None,
    n: int | None = None,
    m: int | None = None,
    layers: Sequence[str] | None = None,
    damp: float = 0.01,
) -> nn.Module:
    """A copy of ``model`` with its ``nn.Linear`` weights pruned in one shot: a fraction
    ``amount`` of every row's weights (unstructured) or ``n`` of every ``m`` kept
    (N:M, e.g. 2:4). ``method``: ``"magnitude"`` (no data), ``"wanda"`` or
    ``"sparsegpt"`` (``batches`` needed). ``layers``: Linear paths (default: all).
    Pruned weights are exact zeros; the mask is ``weight != 0``. Computed on the
    CPU, written back to each layer on its own device."""
    if method not in PRUNE_METHODS:
        raise ValueError(f"method must be one of {PRUNE_METHODS}, got {method!r}")
    check_damp(damp)
    names = _chosen(model, layers, (nn.Linear,))
    for name in names:
        check_sparsity(amount, n, m, model.get_submodule(name).in_features)
    if method != "magnitude":
        batches = _needs_batches(method, batches)
    out = copy.deepcopy(model)
    for name in names:
        layer = out.get_submodule(name)
        w = layer.weight.detach().float().cpu()
        if method == "sparsegpt":
            stats = _stats(out, batches, name)
            new = sparsegpt(w, stats.hessian, amount=amount, n=n, m=m, damp=damp)
        else:
            scores = w.abs()
            if method == "wanda":
                scores = wanda_scores(w, _stats(out, batches, name).norms)
            new = w * row_mask(scores, amount=amount, n=n, m=m)
        layer.weight.copy_(new.to(layer.weight))
    return out
