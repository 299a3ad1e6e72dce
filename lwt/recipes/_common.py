"""What every recipe shares: its result, scaled epochs and the seeded training data."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import KW_ONLY, asdict, dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from .. import cpu, data, distill, models, train


@runtime_checkable
class Method(Protocol):
    """What every method module of ``lwt.recipes`` provides (the zoo relies on it)."""

    METHOD: str

    def run(self, config, base, *, epochs_scale, subset, quiet) -> Result: ...  # noqa: ANN001, D102
    def build(self, config, arch: dict) -> nn.Module: ...  # noqa: ANN001, D102


@runtime_checkable
class CodedMethod(Protocol):
    """A method whose checkpoint is its own file format (e.g. ``.lwtc``)."""

    SUFFIX: str

    def to_bytes(self, model: nn.Module) -> bytes: ...  # noqa: D102
    def from_bytes(self, blob: bytes) -> dict: ...  # noqa: D102


@runtime_checkable
class DeployedMethod(Protocol):
    """A method that also writes a deployable file (e.g. an ONNX Runtime ``.onnx``)."""

    DEPLOY_SUFFIX: str

    def deployed_bytes(self, config, model: nn.Module) -> bytes: ...  # noqa: ANN001, D102


@dataclass
class Result:
    """What a recipe made and what it really did (recorded in the manifest).

    Attributes:
        model: the trained or compressed model (CPU or the training device).
        epochs: total epochs over the training set, all stages together, of the
            model returned (a tuned recipe's discarded runs are not counted).
        arch: what ``build`` needs to recreate the shapes (e.g. kept widths).
        schedule: the stages as run (sparsities, epochs, rates), for the record; for
            a recipe tuned on a validation split, one row per alternative run
            (``chosen`` marks the one returned).
    """

    model: nn.Module
    epochs: int
    arch: dict = field(default_factory=dict)
    schedule: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class FromScratch:
    """The settings every from-scratch recipe shares, read by :func:`train_fresh`. A
    method's ``Config`` subclasses it and adds its own fields after ``model``; the
    training settings are keyword-only.

    ``lr`` is one peak rate, or a tuple of rates tuned on ``validation`` training
    images held out (:func:`lwt.data.split_validation`): one run per rate, same seed,
    and the run with the best validation accuracy is the result.
    """

    model: str
    _: KW_ONLY
    epochs: int
    lr: float | tuple[float, ...]
    weight_decay: float
    batch_size: int = 128
    shift: int | None = None  # random translations (pixels) instead of the default
    seed: int = 0
    validation: int = 0  # training images held out, never trained on (0: none)


def scaled(epochs: int, scale: float) -> int:
    """``epochs`` times ``scale``, rounded, at least 1 (quick runs)."""
    return max(1, round(epochs * scale))


def seeded_loader(
    model_name: str,
    seed: int,
    subset: int | None,
    batch_size: int = 128,
    shift: int | None = None,
) -> data.BatchLoader:
    """Seed every generator (``train.set_seed``), then return the seeded training
    loader of ``model_name``'s dataset (which draws from its own generator);
    ``shift``: random translations instead of the dataset's default augmentation."""
    return seeded_split(model_name, seed, subset, batch_size, shift)[0]


def seeded_split(
    model_name: str,
    seed: int,
    subset: int | None,
    batch_size: int = 128,
    shift: int | None = None,
    *,
    validation: int = 0,
) -> tuple[data.BatchLoader, data.BatchLoader | None]:
    """:func:`seeded_loader` with ``validation`` training images held out:
    ``(training loader, validation loader)``; the second is None when ``validation``
    is 0."""
    train.set_seed(seed)
    loaders = data.get_loaders(
        models.dataset_of(model_name), batch_size, subset=subset, seed=seed,
        shift=shift, validation=validation or None)  # fmt: skip
    return loaders[0], (loaders[1] if validation else None)


def rates_of(config: FromScratch) -> tuple[float, ...]:
    """The peak rates ``config`` trains at: ``(lr,)``, or the tuple to tune over,
    checked before anything is loaded or trained.

    Raises:
        ValueError: ``validation`` not an int >= 0; a rate that is not a finite
            number > 0; an empty or repeating tuple; several rates without a
            validation split.
    """
    v = config.validation
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"validation must be an int >= 0 (0: none), got {v!r}")
    rates = config.lr if isinstance(config.lr, tuple) else (config.lr,)
    ok = [isinstance(r, (int, float)) and not isinstance(r, bool) and math.isfinite(r)
          and r > 0 for r in rates]  # fmt: skip
    if not rates or not all(ok) or len(set(rates)) != len(rates):
        raise ValueError(f"lr must be a finite rate > 0 or a tuple of distinct ones, "
                         f"got {config.lr!r}")  # fmt: skip
    if len(rates) > 1 and v == 0:
        raise ValueError(f"lr={config.lr!r}: several rates need validation > 0 "
                         f"images to choose on, got {v}")  # fmt: skip
    return rates


def _validation_score(
    model: nn.Module, batches: data.BatchLoader
) -> tuple[dict[str, float | None], tuple[bool, int, float]]:
    """Accuracy and mean cross-entropy (nats) on the validation split, rounded for
    the record (a non-finite loss, a diverged run, is recorded as None), and the
    exact ranking key ``(loss finite, images right, -loss)``: a run whose loss is
    not finite ranks below every run whose loss is. The model's mode is restored."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    right, total, n = 0, 0.0, 0
    with torch.no_grad():
        for x, y in batches:
            out = model(x.to(device)).float().cpu()
            total += nn.functional.cross_entropy(out, y, reduction="sum").item()
            right += (out.argmax(1) == y).sum().item()
            n += len(y)
    model.train(was_training)
    loss = total / n
    finite = math.isfinite(loss)
    record = {"validation_accuracy": round(right / n, 4),
              "validation_loss": round(loss, 4) if finite else None}  # fmt: skip
    return record, (finite, right, -loss if finite else -math.inf)


def train_fresh(
    config: FromScratch,
    make: Callable[[], nn.Module],
    *,
    epochs_scale: float,
    subset: int | None,
    quiet: bool,
    wrap: Callable[[nn.Module], tuple[nn.Module, Callable]] | None = None,
) -> Result:
    """The from-scratch recipe: seed, the training data of ``config.model`` (jittered by
    ``config.shift`` pixels if not None; ``config.validation`` images held out), a
    fresh ``make()`` (initialised after the seed is set, so every recipe of the same
    model starts from the same weights), ``config.epochs`` of one-cycle SGD.

    With several rates (``config.lr`` a tuple) this runs once per rate from the same
    seed and keeps the model with the most validation images right (ties: the lower
    validation loss; exact ties keep the earlier rate; a run whose loss is not finite
    ranks last); the schedule records every run's validation scores. With one rate and
    ``validation > 0`` the schedule holds that one run, marked chosen.

    ``wrap(model) -> (module to train, loss_fn)`` changes what is trained and how it
    is scored (a label-smoothed loss, a distiller around the model).
    """
    runs: list[dict] = []
    best: tuple[tuple, dict, nn.Module] | None = None  # (key, run, model)
    epochs = scaled(config.epochs, epochs_scale)
    for rate in rates_of(config):
        loader, val = seeded_split(
            config.model, config.seed, subset, config.batch_size, config.shift,
            validation=config.validation)  # fmt: skip
        model = make()
        net, loss_fn = wrap(model) if wrap is not None else (model, None)
        done = train.onecycle(net, loader, epochs, lr=rate,
                              weight_decay=config.weight_decay, loss_fn=loss_fn,
                              quiet=quiet)  # fmt: skip
        run = {"lr": rate, "epochs": done}
        key: tuple = (True, 0, 0.0)
        if val is not None:
            record, key = _validation_score(model, val)
            run |= record
        runs.append(run)
        if best is None or key > best[0]:
            best = (key, run, model.cpu())
    _, chosen, model = best
    if config.validation <= 0:
        return Result(model, chosen["epochs"])
    for run in runs:
        run["chosen"] = run is chosen
    return Result(model, chosen["epochs"], schedule=runs)


def retrainer(loader: data.BatchLoader, config, quiet: bool):  # noqa: ANN001, ANN201
    """``retrain(model, epochs, anneal=False)``: SGD (momentum) at ``config.lr`` /
    ``config.weight_decay`` over ``loader``, constant or cosine-annealed to 0 — the
    retraining step the prune-retrain recipes hand to the technique."""

    def retrain(model: nn.Module, epochs: int, anneal: bool = False) -> None:
        wd = config.weight_decay
        train.finetune(model, loader, epochs=epochs, lr=config.lr, weight_decay=wd,
                       anneal=anneal, quiet=quiet)  # fmt: skip

    return retrain


def fresh_run(build: Callable) -> Callable[..., Result]:
    """The ``run`` of a method whose model is ``build(config, {})`` trained from
    scratch by :func:`train_fresh` with plain cross-entropy (``transferred``,
    ``equivariant``)."""

    def run(
        config: FromScratch,
        base: None,
        *,
        epochs_scale: float = 1.0,
        subset: int | None = None,
        quiet: bool = True,
    ) -> Result:
        return train_fresh(
            config,
            lambda: build(config, {}),
            epochs_scale=epochs_scale,
            subset=subset,
            quiet=quiet,
        )

    return run


def calibration_batches(
    model_name: str, images: int, seed: int, batch_size: int = 128
) -> list[tuple]:
    """``images`` training images of ``model_name``'s dataset as ``(x, y)`` batches,
    a seeded subset without augmentation: the calibration data of one-shot methods
    (GPTQ, AWQ, Wanda, SparseGPT, head importance)."""
    loader, _ = data.get_loaders(models.dataset_of(model_name), batch_size,
                                 subset=images, seed=seed, augment=False)  # fmt: skip
    return list(loader)


@dataclass(frozen=True)
class TransformerFinetune:
    """The settings every compress-then-fine-tune recipe of a shipped transformer
    shares (``nmsparse``, ``heads``): the base, calibration images, and a short AdamW
    fine-tune (cosine from ``lr`` to 0, label smoothing, bf16 where the CPU has AMX).
    A method's ``Config`` subclasses it and adds its own settings, all defaulted."""

    base: str  # the shipped model (e.g. cct-cifar)
    model: str  # its lwt.models architecture
    calibration: int = 512  # training images, no augmentation
    epochs: int = 10
    lr: float = 2e-4
    weight_decay: float = 0.05
    batch_size: int = 128
    precision: str = "auto"  # "auto": bf16 autocast on CUDA or an AMX-BF16 CPU
    seed: int = 0
    # distillation from the uncompressed base during the fine-tune (lwt.distill's
    # loss: alpha * T^2 * KL(teacher || student) + (1 - alpha) * CE); alpha = 0: none
    alpha: float = 0.0
    T: float = 1.0


def teacher_for(config: TransformerFinetune, base: nn.Module) -> nn.Module | None:
    """A frozen copy of the uncompressed ``base`` when ``config.alpha > 0`` (taken
    before a method compresses ``base`` in place), else None: the ``teacher`` that
    :func:`adamw_finetune` distils from."""
    return copy.deepcopy(base).cpu().eval() if config.alpha > 0 else None


def precision_of(config: object) -> str:
    """``"bf16"`` or ``"fp32"``: ``config.precision``, with ``"auto"`` resolved on
    this machine (bf16 only where it is computed natively: CUDA or AMX-BF16)."""
    if config.precision != "auto":
        return config.precision
    if train.default_device().type == "cuda":
        return "bf16"
    return "bf16" if cpu.cpu_features().get("AMX-BF16") else "fp32"


def resume_path(stem: str, key: object) -> Path:
    """Where a resumable run keeps its state: ``$LWT_RESUME_DIR`` (default
    ``~/.cache/lwt/resume``) / ``<stem>-<12 hex digits of sha256(key as JSON)>.pt``,
    so a changed setting starts a new file instead of resuming an old one."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    root = os.environ.get("LWT_RESUME_DIR") or Path.home() / ".cache/lwt/resume"
    return Path(root) / f"{stem}-{digest}.pt"


def _fingerprint(model: nn.Module) -> str:
    """sha256 of a model's state (names, shapes and bytes): the starting point."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def adamw_finetune(
    model: nn.Module,
    config: TransformerFinetune,
    *,
    epochs_scale: float,
    subset: int | None,
    quiet: bool,
    teacher: nn.Module | None = None,
) -> tuple[int, dict]:
    """Fine-tune a compressed transformer by ``config`` on its seeded training data;
    returns the epochs run and the schedule row for the manifest. Resumable
    (``train.train_resumable``): the state file's name hashes the config, the epochs,
    the subset and the compressed model it starts from.

    With ``config.alpha > 0`` the loss is :class:`lwt.distill.Distiller`'s against
    ``teacher`` (the uncompressed base, frozen; required then) on the same augmented
    batch; otherwise cross-entropy with label smoothing 0.1."""
    if config.alpha > 0 and teacher is None:
        raise ValueError(f"config.alpha={config.alpha} needs a teacher")
    precision = precision_of(config)
    loader = seeded_loader(config.model, config.seed, subset, config.batch_size)
    epochs = scaled(config.epochs, epochs_scale)
    opt, sched = train.adamw_cosine(model, epochs * len(loader), lr=config.lr,
                                    weight_decay=config.weight_decay,
                                    warmup=0)  # fmt: skip
    key = [asdict(config), epochs, subset, _fingerprint(model)]
    state = resume_path(f"{config.model}-{config.METHOD}", key)
    # channels_last, as in the from-scratch recipe: on a CPU the tokenizer's max-pool is
    # slow in NCHW (notebook 08's inference profile); the weights are the same numbers
    model.to(memory_format=torch.channels_last)
    net: nn.Module = model
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)
    if config.alpha > 0:
        teacher.to(memory_format=torch.channels_last)
        net = distill.Distiller(model, teacher, T=config.T, alpha=config.alpha)
        loss = net.loss
    history = train.train_resumable(net, loader, epochs, opt, sched, state=state,
                                    loss_fn=loss, precision=precision,
                                    quiet=quiet)  # fmt: skip
    model.to(memory_format=torch.contiguous_format)
    seconds = round(sum(row["seconds"] for row in history))
    row = {"epochs": epochs, "lr": config.lr, "optimizer": "AdamW, cosine",
           "precision": precision, "memory_format": "channels_last",
           "train_seconds_all_sessions": seconds}  # fmt: skip
    if config.alpha > 0:
        row["distilled"] = {"teacher": config.base, "T": config.T,
                            "alpha": config.alpha}  # fmt: skip
    return epochs, row
