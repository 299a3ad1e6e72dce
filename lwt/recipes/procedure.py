"""Low-rank factorization's procedure, one change at a time: layer by layer or all at
once, fitting the original network's outputs or the labels — the same ranks, steps,
optimizer, images and BatchNorm mode in every arm.

- ``layerwise``: ``lowrank.layerwise_factorize`` (Denton et al. 2014): each layer in
  forward order is replaced and fixed, then the layers after it train ``steps`` Adam
  steps;
- ``all_at_once``: every layer replaced at once, then every parameter trains
  ``steps × layers`` Adam steps (the same total);
- ``loss``: ``reconstruction`` minimises ``‖g(x) − f(x)‖² / n`` between the factored
  network's logits and the original's (no labels), ``task`` the cross-entropy with
  the labels.

What "layer by layer" means, beyond the order: a replaced layer's factors are fixed and
only the layers after it train, with a fresh Adam per layer (the stem before the first
factored layer never trains); all at once, every parameter, factors included, trains
under one Adam. Layer by layer, each layer's ``steps`` steps read the calibration
batches from the first (cycled); all at once reads them in one cycle — the same
sequence when ``steps`` is a multiple of the number of batches (the shipped runs: 20
steps, 20 batches), not otherwise.

All arms run in eval mode (BatchNorm statistics frozen, as ``layerwise_factorize``
does), on the same seeded calibration images (no augmentation, cycled), and score
``eval_images`` test images after every ``steps`` steps: the manifest's schedule holds
that held-out curve. Short by design — the article's procedure on a small calibration
set — not a full fine-tune (``factorized`` is that).
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from .. import data, lowrank, models, train
from ._common import Result, calibration_batches

PROCEDURES = ("layerwise", "all_at_once")
LOSSES = ("reconstruction", "task")


@dataclass(frozen=True)
class Config:
    """Settings of one arm of the procedure comparison."""

    METHOD: ClassVar[str] = "lowrank-procedure"
    base: str
    ranks: dict[str, int | list[int]] = field(default_factory=dict)
    procedure: str = "layerwise"
    loss: str = "reconstruction"
    steps: int = 20  # Adam steps per factorized layer (all at once: the same total)
    lr: float = 1e-3
    calibration: int = 2560  # training images, cycled in batches of 128
    eval_images: int = 2000  # test images scored along the way (a fixed subset)
    seed: int = 0


METHOD = Config.METHOD


def build(config: Config, arch: dict) -> nn.Module:
    """The baseline with the recorded layers factorized at the recorded ranks."""
    model = models.create_model(config.base)
    return lowrank.factorize(model, arch.get("ranks", config.ranks))


def _check(config: Config) -> None:
    if config.procedure not in PROCEDURES:
        raise ValueError(f"procedure must be one of {PROCEDURES}, "
                         f"got {config.procedure!r}")  # fmt: skip
    if config.loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {config.loss!r}")
    if not config.ranks:
        raise ValueError("ranks is empty: name the layers to factorize")
    for name in ("steps", "calibration", "eval_images"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
    if not config.lr > 0:
        raise ValueError(f"lr must be > 0, got {config.lr}")
    layers = {n for n, m in models.create_model(config.base).named_modules()
              if isinstance(m, nn.Conv2d | nn.Linear)}  # fmt: skip
    if unknown := sorted(set(config.ranks) - layers):
        raise ValueError(f"ranks names {unknown}, not conv/linear layers of "
                         f"{config.base}")  # fmt: skip


def _all_at_once(model: nn.Module, config: Config, batches: list, score) -> None:  # noqa: ANN001
    reference = copy.deepcopy(model).eval()
    lowrank.factorize(model, config.ranks)
    model.eval()  # BatchNorm frozen, as in the layer-wise arm
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                           lr=config.lr)  # fmt: skip
    total = config.steps * len(config.ranks)
    pairs = itertools.cycle(batches)
    for step, (x, y) in zip(range(1, total + 1), pairs, strict=False):
        opt.zero_grad(set_to_none=True)
        out = model(x)
        if config.loss == "task":
            value = nn.functional.cross_entropy(out, y)
        else:
            with torch.no_grad():
                wanted = reference(x)
            value = nn.functional.mse_loss(out, wanted)
        value.backward()
        opt.step()
        if step % config.steps == 0:
            score(model)
    opt.zero_grad(set_to_none=True)


def run(
    config: Config,
    base: nn.Module,
    *,
    epochs_scale: float = 1.0,
    subset: int | None = None,
    quiet: bool = True,
) -> Result:
    """One arm: factorize ``base`` by ``config.procedure`` with ``config.loss``;
    the schedule records the held-out accuracy after every ``steps`` steps."""
    _check(config)
    if not epochs_scale > 0:
        raise ValueError(f"epochs_scale must be > 0, got {epochs_scale}")
    steps = max(1, round(config.steps * epochs_scale))
    config = Config(**{**config.__dict__, "steps": steps})
    train.set_seed(config.seed)
    images = subset or config.calibration
    batches = calibration_batches(config.base, images, config.seed)
    test = data.load_dataset(models.dataset_of(config.base), False,
                             subset=config.eval_images, seed=0)  # fmt: skip
    held_out = data.BatchLoader(test, 500)
    curve: list[dict] = []
    base = base.cpu()

    def score(model: nn.Module) -> None:
        acc = train.evaluate(model, held_out)
        model.eval()
        step = config.steps * (len(curve) + 1)
        curve.append({"step": step, "accuracy": round(acc, 4)})

    if config.procedure == "layerwise":
        lowrank.layerwise_factorize(
            base, config.ranks, batches, steps=config.steps, lr=config.lr,
            loss=config.loss, after_layer=lambda name, m: score(m),
        )  # fmt: skip
    else:
        _all_at_once(base, config, batches, score)
    schedule = [{"procedure": config.procedure, "loss": config.loss,
                 "steps_per_layer": config.steps, "calibration_images": images,
                 "bn": "eval mode", "optimizer": "Adam",
                 "held_out": f"{config.eval_images} test images",
                 "curve": curve}]  # fmt: skip
    # epochs: 0, the calibration images are cycled (steps × layers batches of 128)
    return Result(base.eval(), 0, arch={"ranks": dict(config.ranks)}, schedule=schedule)
