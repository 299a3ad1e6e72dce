"""Pipelines: a shipped baseline + compression techniques -> a shipped checkpoint.

Technique modules never import each other; results that take longer than a lesson
may spend are produced here, by ``python -m lwt.zoo train NAME``, and loaded in the
notebooks with ``lwt.zoo.load_pretrained(NAME)`` like the baselines.

- ``lenet300-pruned`` / ``lenet5-pruned``: Han et al. 2015 iterative magnitude
  pruning, per-layer final sparsities near the paper's Table 1, retrained at 1/10
  of the baseline's peak learning rate (Han), then once more at the final
  sparsities with the rate annealed to zero.
- ``resnet20-filters``: Li et al. 2017 L1 filter pruning of the inner channels of
  every basic block (kept widths rounded to multiples of 8: 8/16/40), then
  fine-tuning with a one-cycle schedule.
- ``resnet20-qat4``: 4-bit weights (per channel, MSE range), 8-bit activations:
  post-training quantization, then quantization-aware training with the
  straight-through estimator (Jacob et al. 2018).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field

from torch import nn

from . import data, filter_pruning, models, pruning, quantization, train


@dataclass(frozen=True)
class Pipeline:
    """How a compressed checkpoint is made from a baseline."""

    base: str
    method: str  # "iterative" (Han), "filters" (Li) or "qat" (quantization-aware)
    final: dict[str, float] = field(default_factory=dict)  # iterative: layer sparsities
    amount: float = 0.0  # filters: fraction of inner channels removed per block
    multiple_of: int = 1  # filters: kept widths rounded to a multiple of this
    steps: int = 5  # iterative: pruning steps (cubic ramp to ``final``)
    epochs: int = 6  # iterative: epochs per step; filters: total fine-tuning epochs
    final_epochs: int = 0  # iterative: then retrain at ``final``...
    final_lr: float = 0.0  # ...from this lr (default ``lr``) annealed to 0
    weight_bits: int = 8  # qat: weight bit width (activations: act_bits)
    act_bits: int = 8
    weight_observer: str = "minmax"  # qat: weight range (see lwt.observers)
    lr: float = 0.005
    weight_decay: float = 1e-4
    seed: int = 0


PIPELINES: dict[str, Pipeline] = {
    "lenet300-pruned": Pipeline(
        "lenet300",
        "iterative",
        {"fc1": 0.925, "fc2": 0.91, "fc3": 0.74},
        epochs=12,
        lr=0.01,
        final_epochs=24,
    ),
    "lenet5-pruned": Pipeline(
        "lenet5",
        "iterative",
        {"conv1": 0.34, "conv2": 0.88, "fc1": 0.93, "fc2": 0.81},
        lr=0.01,
        weight_decay=5e-4,
        final_epochs=6,
    ),
    "resnet20-filters": Pipeline(
        "resnet20",
        "filters",
        amount=0.4,
        multiple_of=8,
        epochs=10,
        lr=0.05,
        weight_decay=5e-4,
    ),
    "resnet20-qat4": Pipeline(
        "resnet20",
        "qat",
        weight_bits=4,
        weight_observer="mse",
        epochs=3,
        lr=0.005,
        weight_decay=0.0,
    ),
}


def recipe(name: str) -> dict:
    """The pipeline's settings as a plain dict (for the manifest)."""
    return asdict(_get(name))


def _get(name: str) -> Pipeline:
    if name not in PIPELINES:
        raise ValueError(f"pipeline {name!r} unknown; choose from {sorted(PIPELINES)}")
    return PIPELINES[name]


def build(name: str) -> nn.Module:
    """The (untrained) architecture of a pipeline's result, ready for its weights."""
    p = _get(name)
    model = models.create_model(p.base)
    if p.method == "filters":
        filter_pruning.prune_resnet_blocks(model, p.amount, p.multiple_of)
    if p.method == "qat":
        model = _quantized(model, p)
        quantization.set_mode(model, observe=False, quantize=True)
    return model


def _quantized(model: nn.Module, p: Pipeline) -> nn.Module:
    return quantization.quantize_model(
        model, p.weight_bits, p.act_bits, weight_observer=p.weight_observer
    )


def ramp(final: dict[str, float], steps: int) -> list[dict[str, float]]:
    """Sparsities rising to ``final`` in ``steps`` steps, fast first (a cubic ramp:
    ``s_k = s_f (1 - (1 - k/steps)^3)``, the discrete Zhu & Gupta schedule)."""
    return [
        {n: s * (1 - (1 - k / steps) ** 3) for n, s in final.items()}
        for k in range(1, steps + 1)
    ]


def run(
    name: str,
    base: nn.Module,
    epochs_scale: float = 1.0,
    subset: int | None = None,
    quiet: bool = True,
) -> nn.Module:
    """Compress ``base`` (a trained copy of the pipeline's baseline) by its recipe.

    Args:
        name: a key of ``PIPELINES``.
        base: the trained baseline (changed in place and returned).
        epochs_scale: multiply the epochs (quick runs use less than 1).
        subset: train on a subset of this many images (quick runs).
        quiet: hide progress.
    """
    p = _get(name)
    train.set_seed(p.seed)
    loader, _ = data.get_loaders(
        models.dataset_of(p.base), 128, subset=subset, seed=p.seed
    )
    epochs = max(1, round(p.epochs * epochs_scale))
    if p.method == "iterative":
        schedule = ramp(p.final, p.steps)
        pruning.iterative_prune(
            base, loader, schedule, epochs, p.lr, p.weight_decay, quiet=quiet
        )
        if p.final_epochs:
            last = max(1, round(p.final_epochs * epochs_scale))
            lr = p.final_lr or p.lr
            pruning.iterative_prune(
                base,
                loader,
                [p.final],
                last,
                lr,
                p.weight_decay,
                anneal=True,
                quiet=quiet,
            )
        return pruning.make_permanent(base)
    if p.method == "qat":
        return _qat(base, p, loader, epochs, quiet)
    filter_pruning.prune_resnet_blocks(base, p.amount, p.multiple_of)
    opt, sched = train.sgd_onecycle(base, epochs * len(loader), p.lr, p.weight_decay)
    train.train(base, loader, epochs, opt, sched, quiet=quiet)
    return base


def _qat(
    base: nn.Module, p: Pipeline, loader: data.BatchLoader, epochs: int, quiet: bool
) -> nn.Module:
    """PTQ (BN folded, ranges calibrated on 512 training images), then QAT: SGD with
    the straight-through estimator, cosine-annealed from ``p.lr``."""
    model = _quantized(base, p)
    quantization.calibrate(model, itertools.islice(iter(loader), 4))
    return quantization.qat(model, loader, epochs, p.lr, p.weight_decay, quiet)
