"""Hu et al. 2016 network trimming: remove the hidden units that fire least (highest
APoZ), retrain, re-measure, repeat; then retrain at the final widths with the rate
annealed to zero.

The removed fraction of each layer rises along the Zhu & Gupta cubic
(``pruning.cubic_schedule``) to ``1 − width / original width``; the activation
statistics are measured on ``calibration`` training images before every step. The
result is a smaller dense MLP: its widths are recorded in the manifest
(``arch["widths"]``), so a checkpoint loads into fresh ``nn.Linear`` layers.

Reference: Hu, Peng, Tai, Tang. Network Trimming: A Data-Driven Neuron Pruning
Approach towards Efficient Deep Architectures. arXiv:1607.03250, 2016.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import ClassVar

from torch import nn

from .. import data, models, pruning
from ._common import Result, retrainer, scaled, seeded_loader


@dataclass(frozen=True)
class Config:
    """Settings of a neuron-pruning (trimming) run of an MLP."""

    METHOD: ClassVar[str] = "trimming"
    base: str
    # producer Linear -> kept units; each producer feeds the next Linear in `chain`
    widths: dict[str, int] = field(default_factory=dict)
    chain: list[str] = field(default_factory=lambda: ["fc1", "fc2", "fc3"])  # in order
    criterion: str = "apoz"
    calibration: int = 10_000  # training images for the activation statistics
    steps: int = 3
    epochs_per_step: int = 4  # constant lr
    final_epochs: int = 24  # lr annealed to 0
    lr: float = 0.05
    weight_decay: float = 1e-4
    seed: int = 0


METHOD = Config.METHOD


def _links(config: Config) -> list[tuple[str, str]]:
    return [
        (p, c)
        for p, c in zip(config.chain[:-1], config.chain[1:], strict=True)
        if p in config.widths
    ]


def build(config: Config, arch: dict) -> nn.Module:
    """The baseline with each producer (and the next layer's inputs) at
    ``arch["widths"]`` (fresh layers: the checkpoint's weights go in next)."""
    if "widths" not in arch:
        raise ValueError("arch needs 'widths' ({layer: kept units})")
    model = models.create_model(config.base)
    for name, width in arch["widths"].items():
        i = config.chain.index(name)
        fc, nxt = (model.get_submodule(n) for n in config.chain[i : i + 2])
        setattr(model, name, nn.Linear(fc.in_features, width))
        setattr(model, config.chain[i + 1], nn.Linear(width, nxt.out_features))
    return model


def run(
    config: Config,
    base: nn.Module,
    *,
    epochs_scale: float = 1.0,
    subset: int | None = None,
    quiet: bool = True,
) -> Result:
    """Trim ``base`` to ``config.widths`` step by step, retraining after each."""
    loader = seeded_loader(config.base, config.seed, subset)
    calib, _ = data.get_loaders(
        models.dataset_of(config.base), 500, subset=config.calibration, seed=config.seed
    )
    links = _links(config)
    original = {p: base.get_submodule(p).out_features for p, _ in links}
    amount = {p: 1 - config.widths[p] / n for p, n in original.items()}
    step_epochs = scaled(config.epochs_per_step, epochs_scale)

    retrain = retrainer(loader, config, quiet)
    steps = pruning.cubic_schedule(amount, config.steps)
    history = pruning.gradual_prune_neurons(
        base, links, steps, batches=calib, retrain=partial(retrain, epochs=step_epochs),
        criterion=config.criterion, seed=config.seed,
    )  # fmt: skip
    final_epochs = (
        scaled(config.final_epochs, epochs_scale) if config.final_epochs else 0
    )
    if final_epochs:
        retrain(base, final_epochs, anneal=True)
    schedule = [
        {"widths": w, "epochs": step_epochs, "lr": config.lr, "anneal": False}
        for w in history
    ]
    if final_epochs:
        schedule.append(
            {
                "widths": history[-1],
                "epochs": final_epochs,
                "lr": config.lr,
                "anneal": True,
            }
        )
    return Result(
        base,
        sum(s["epochs"] for s in schedule),
        arch={"widths": history[-1]},
        schedule=schedule,
    )
