"""Deep Compression's last two stages on a pruned model: k-means weight sharing with
codebook fine-tuning, then the ``.lwtc`` file (relative indices, Huffman coding).

Optionally the layers are first pruned a little further (``prune``: target
sparsities reached in ``prune_steps`` equal steps, each retrained for
``prune_epochs`` at ``prune_lr``, as in ``iterative``). Then each layer's weights are
shared (``bits``, linear initialisation), the codebooks and biases are fine-tuned
(``epochs`` of SGD at ``lr``, cosine-annealed; Han eq. 3), rounded to float16, and the
model is encoded and decoded: the shipped file is the ``.lwtc`` file itself, and the
accuracy in the manifest is that of the decoded model.

Reference: Han, Mao, Dally. Deep Compression. ICLR 2016.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from torch import Tensor, nn

from .. import models, pruning, sharing, train
from ._common import Result, scaled, seeded_loader

SUFFIX = ".lwtc"


@dataclass(frozen=True)
class Config:
    """Settings of a Deep Compression run from a shipped pruned model."""

    METHOD: ClassVar[str] = "deepc"
    base: str  # the shipped pruned model (e.g. lenet300-pruned)
    model: str  # its lwt.models architecture
    bits: dict[str, int] = field(default_factory=dict)  # layer -> bits per weight
    prune: dict[str, float] = field(default_factory=dict)  # further sparsity targets
    prune_steps: int = 0
    prune_epochs: int = 0
    prune_lr: float = 0.01
    epochs: int = 10  # codebook fine-tuning
    lr: float = 1e-4
    weight_decay: float = 0.0
    seed: int = 0


METHOD = Config.METHOD


def build(config: Config, arch: dict) -> nn.Module:
    """The baseline's architecture: the file decodes to its state dict."""
    return models.create_model(config.model)


def to_bytes(model: nn.Module) -> bytes:
    """The shipped file: the model as ``.lwtc``."""
    return sharing.compress(model)


def from_bytes(blob: bytes) -> dict[str, Tensor]:
    """The state dict of a shipped ``.lwtc`` file (checks its CRC)."""
    return sharing.decompress(blob)


def run(
    config: Config,
    base: nn.Module,
    *,
    epochs_scale: float = 1.0,
    subset: int | None = None,
    quiet: bool = True,
) -> Result:
    """Prune further (optional), share, fine-tune the codebooks, encode and decode."""
    loader = seeded_loader(config.model, config.seed, subset)
    schedule = []
    if config.prune and config.prune_steps:
        start = {
            r["layer"]: 1 - r["kept"]
            for r in pruning.sparsity_report(base)
            if r["layer"] != "total"
        }
        prune_epochs = scaled(config.prune_epochs, epochs_scale)
        for k in range(1, config.prune_steps + 1):
            amounts = {  # every layer masked: the others keep exactly their zeros
                n: s0 + (config.prune.get(n, s0) - s0) * k / config.prune_steps
                for n, s0 in start.items()
            }
            pruning.magnitude_prune(base, amounts)
            train.finetune(base, loader, epochs=prune_epochs, lr=config.prune_lr,
                           weight_decay=1e-4, anneal=k == config.prune_steps,
                           quiet=quiet)  # fmt: skip
            sparsity = {n: round(s, 6) for n, s in amounts.items()}
            schedule.append(
                {"sparsity": sparsity, "epochs": prune_epochs, "lr": config.prune_lr}
            )
        pruning.make_permanent(base)
    sharing.share_weights(base, dict(config.bits))
    epochs = scaled(config.epochs, epochs_scale)
    train.finetune(base, loader, epochs=epochs, lr=config.lr,
                   weight_decay=config.weight_decay, quiet=quiet)  # fmt: skip
    # codebooks and biases are stored in float16
    model = sharing.round_to_float16(sharing.unshare(base.cpu()))
    schedule.append({"bits": dict(config.bits), "epochs": epochs, "lr": config.lr})
    decoded = build(config, {})
    decoded.load_state_dict(from_bytes(to_bytes(model)))
    total = sum(s["epochs"] for s in schedule)
    return Result(decoded.eval(), total, schedule=schedule)
