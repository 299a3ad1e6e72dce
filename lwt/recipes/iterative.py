"""Han et al. 2015 iterative pruning: prune → retrain, step by step, then retrain at
the final sparsities with the rate annealed to zero.

The per-layer targets rise along the Zhu & Gupta cubic (``pruning.cubic_schedule``);
retraining is SGD with momentum at ``lr`` (a fifth of the baselines' peak 0.05;
Han et al. suggest about a tenth), constant within a step.

Reference: Han, Pool, Tran, Dally. Learning both Weights and Connections for Efficient
Neural Networks. NeurIPS 2015.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import ClassVar

from torch import nn

from .. import models, pruning
from ._common import Result, retrainer, scaled, seeded_loader


@dataclass(frozen=True)
class Config:
    """Settings of an iterative (Han) pruning run."""

    METHOD: ClassVar[str] = "iterative"
    base: str
    amount: dict[str, float] = field(default_factory=dict)  # layer -> final sparsity
    steps: int = 5  # pruning steps along the cubic ramp
    epochs_per_step: int = 6  # retraining after each step (constant lr)
    final_epochs: int = 0  # then retraining at ``amount``, lr annealed to 0
    lr: float = 0.01
    weight_decay: float = 1e-4
    seed: int = 0


METHOD = Config.METHOD


def build(config: Config, arch: dict) -> nn.Module:
    """The baseline's architecture: pruned weights are zeros in the same shapes."""
    return models.create_model(config.base)


def run(
    config: Config,
    base: nn.Module,
    *,
    epochs_scale: float = 1.0,
    subset: int | None = None,
    quiet: bool = True,
) -> Result:
    """Prune ``base`` along the schedule, retraining after every step."""
    loader = seeded_loader(config.base, config.seed, subset)
    stages = [
        (amounts, scaled(config.epochs_per_step, epochs_scale), False)
        for amounts in pruning.cubic_schedule(config.amount, config.steps)
    ]
    if config.final_epochs:
        stages.append((config.amount, scaled(config.final_epochs, epochs_scale), True))
    retrain = retrainer(loader, config, quiet)
    for amounts, epochs, anneal in stages:
        pruning.iterative_prune(
            base, [amounts], retrain=partial(retrain, epochs=epochs, anneal=anneal)
        )
    schedule = [
        {
            "sparsity": {n: round(s, 6) for n, s in amounts.items()},
            "epochs": epochs,
            "lr": config.lr,
            "anneal": anneal,
        }
        for amounts, epochs, anneal in stages
    ]
    model = pruning.make_permanent(base)
    return Result(model, sum(e for _, e, _ in stages), schedule=schedule)
