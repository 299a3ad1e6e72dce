"""Low-rank factorization of chosen layers (all at once), then fine-tuning with a
one-cycle schedule.

Linear layers are split by a truncated SVD (``W ≈ U_r Σ_r V_rᵀ``), convolutions by
Tucker-2 (Kim et al. 2016) or CP (Lebedev et al. 2015) — see ``lwt.lowrank``. The
ranks are the architecture: ``build`` factorizes a fresh baseline with them (shapes
depend on the ranks alone), and the checkpoint's weights replace the factors.

References: Denton et al. Exploiting Linear Structure Within Convolutional Networks
for Efficient Evaluation. NeurIPS 2014. Kim et al. Compression of Deep Convolutional
Neural Networks for Fast and Low Power Mobile Applications. ICLR 2016.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from torch import nn

from .. import lowrank, models, train
from ._common import Result, scaled, seeded_loader


@dataclass(frozen=True)
class Config:
    """Settings of a factorize-then-fine-tune run."""

    METHOD: ClassVar[str] = "lowrank"
    base: str
    # layer path -> rank (Linear, CP) or [R_in, R_out] (Tucker-2)
    ranks: dict[str, int | list[int]] = field(default_factory=dict)
    decomposition: str = "auto"  # lowrank.factorize's method
    epochs: int = 10  # fine-tuning, one-cycle
    lr: float = 0.05
    weight_decay: float = 5e-4
    seed: int = 0


METHOD = Config.METHOD


def stage_ranks(model_name: str, fractions: dict[str, float]) -> dict[str, list[int]]:
    """Tucker-2 ranks ``[round(f·S), round(f·T)]`` for every 3×3 (or larger) conv of a
    model, with the fraction ``f`` of the first prefix in ``fractions`` that the conv's
    path starts with (e.g. ``{"layer1": 0.75, "layer2": 0.5}``: a ResNet's stages).
    Convs that match no prefix stay dense."""
    ranks = {}
    for name, m in models.create_model(model_name).named_modules():
        if not isinstance(m, nn.Conv2d) or m.kernel_size == (1, 1):
            continue
        f = next((f for p, f in fractions.items() if name.startswith(p)), None)
        if f is not None:
            ranks[name] = [round(f * m.in_channels), round(f * m.out_channels)]
    return ranks


def build(config: Config, arch: dict) -> nn.Module:
    """The baseline with the recorded layers factorized at the recorded ranks
    (``arch["ranks"]``, else the config's)."""
    model = models.create_model(config.base)
    ranks = arch.get("ranks", config.ranks)
    return lowrank.factorize(model, ranks, method=config.decomposition)


def run(
    config: Config,
    base: nn.Module,
    *,
    epochs_scale: float = 1.0,
    subset: int | None = None,
    quiet: bool = True,
) -> Result:
    """Factorize ``base`` at the configured ranks, then fine-tune every layer."""
    loader = seeded_loader(config.base, config.seed, subset)
    epochs = scaled(config.epochs, epochs_scale)
    lowrank.factorize(base, config.ranks, method=config.decomposition)
    done = train.onecycle(base, loader, epochs, lr=config.lr,
                          weight_decay=config.weight_decay, quiet=quiet)  # fmt: skip
    return Result(base.cpu(), done, arch={"ranks": dict(config.ranks)})
