"""Deep Compression's last two stages on a pruned model: k-means weight sharing with
codebook fine-tuning, then the ``.lwtc`` file (relative indices, Huffman coding).

The widths are fixed (``bits``) or chosen (``choose_on_test``: that many test images,
drawn by ``data.split_validation`` from the test set, score each layer shared alone at
each width of ``candidates`` with no fine-tuning; each layer gets the narrowest width
with at most ``slack`` more errors than the unshared model, ``sharing.choose_bits``).
The shipped LeNets trained on all 60,000 training images, so a split held out from
training does not exist for them; the other test images are the ones to report on,
and the manifest's schedule records the sweep.

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

import torch
from torch import Tensor, nn

from .. import data, models, pruning, sharing, stats, train
from ._common import Result, scaled, seeded_loader

SUFFIX = ".lwtc"


@dataclass(frozen=True)
class Config:
    """Settings of a Deep Compression run from a shipped pruned model."""

    METHOD: ClassVar[str] = "deepc"
    base: str  # the shipped pruned model (e.g. lenet300-pruned)
    model: str  # its lwt.models architecture
    bits: dict[str, int] = field(default_factory=dict)  # layer -> bits per weight
    choose_on_test: int = 0  # > 0: bits chosen on this many test images instead
    slack: int = 0  # errors above the unshared model's a chosen width may make
    candidates: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    prune: dict[str, float] = field(default_factory=dict)  # further sparsity targets
    prune_steps: int = 0
    prune_epochs: int = 0
    prune_lr: float = 0.01
    epochs: int = 10  # codebook fine-tuning
    lr: float = 1e-4
    weight_decay: float = 0.0
    seed: int = 0


METHOD = Config.METHOD


def choosing_split(config: Config) -> tuple[data.ImageData, data.ImageData]:
    """``(report, choose)``: the test images that report and those that choose."""
    test = data.load_dataset(models.dataset_of(config.model), False)
    return data.split_validation(test, config.choose_on_test)


def chosen_bits(entry: dict) -> dict[str, int]:
    """The widths a shipped checkpoint was shared at, from its manifest ``entry``
    (fixed or chosen: the schedule's last step records them either way)."""
    return {n: int(b) for n, b in entry["schedule"][-1]["bits"].items()}


def _check(config: Config, base: nn.Module) -> None:
    n_test = data.COUNTS[models.dataset_of(config.model)][1]
    chosen = config.choose_on_test
    whole = isinstance(chosen, int) and not isinstance(chosen, bool)
    if not whole or not 0 <= chosen < n_test:
        raise ValueError(f"choose_on_test must be in [0, {n_test - 1}] test images, "
                         f"got {config.choose_on_test}")  # fmt: skip
    if config.choose_on_test and not all(
        isinstance(b, int) and 1 <= b <= 16 for b in config.candidates or [0]
    ):
        raise ValueError(f"candidates must be widths in 1..16, got {config.candidates}")
    if config.choose_on_test and config.bits:
        raise ValueError(f"choose_on_test={config.choose_on_test} chooses the bits: "
                         f"leave bits empty, got {config.bits}")  # fmt: skip
    if not config.choose_on_test and not config.bits:
        raise ValueError("bits is empty: give {layer: bits} or choose_on_test > 0")
    if not config.slack >= 0:  # NaN too
        raise ValueError(f"slack must be >= 0 errors, got {config.slack}")
    layers = {n for n, m in base.named_modules()
              if isinstance(m, nn.Conv2d | nn.Linear)}  # fmt: skip
    if unknown := sorted(set(config.bits) - layers):
        raise ValueError(f"bits names {unknown}; conv/linear layers: {sorted(layers)}")
    if bad := {n: b for n, b in config.bits.items()
               if isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= 16}:
        raise ValueError(f"bits must be widths in 1..16, got {bad}")  # fmt: skip


def _choose(config: Config, base: nn.Module) -> tuple[dict[str, int], dict]:
    choose = data.BatchLoader(choosing_split(config)[1], 1000)

    def errors(m: nn.Module) -> int:
        return int((~stats.correct_mask(m, choose)).sum())

    reference = errors(base)
    sweep = sharing.bit_sweep(base, errors, candidates=config.candidates)
    bits = sharing.choose_bits(sweep, reference, slack=config.slack)
    record = {"chosen_on": f"{config.choose_on_test} test images "
              "(data.split_validation of the test set)", "unshared_errors": reference,
              "sweep_errors": {n: {str(b): int(e) for b, e in row.items()}
                               for n, row in sweep.items()}}  # fmt: skip
    return bits, record


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
    """Prune further (optional), choose the widths (optional), share, fine-tune the
    codebooks, encode and decode."""
    _check(config, base)
    loader = seeded_loader(config.model, config.seed, subset)
    schedule = []
    bits, record = dict(config.bits), {}
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
    if config.choose_on_test:  # after any further pruning: the layers to be shared
        modes = {n: m.training for n, m in base.named_modules()}
        with torch.no_grad():
            bits, record = _choose(config, base.cpu().eval())
        for n, m in base.named_modules():
            m.training = modes[n]
    sharing.share_weights(base, bits)
    epochs = scaled(config.epochs, epochs_scale)
    train.finetune(base, loader, epochs=epochs, lr=config.lr,
                   weight_decay=config.weight_decay, quiet=quiet)  # fmt: skip
    # codebooks and biases are stored in float16
    model = sharing.round_to_float16(sharing.unshare(base.cpu()))
    schedule.append({"bits": bits, **record, "epochs": epochs, "lr": config.lr})
    decoded = build(config, {})
    decoded.load_state_dict(from_bytes(to_bytes(model)))
    total = sum(s["epochs"] for s in schedule)
    return Result(decoded.eval(), total, schedule=schedule)
