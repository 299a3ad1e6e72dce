"""Shipped pretrained baselines: verified loading and from-scratch reproduction.

Checkpoints live in ``data/checkpoints/`` (``$LWT_CHECKPOINT_DIR`` overrides) beside
``manifest.json``, which records for each one the file's sha256 and size, the recipe,
seed, epochs and the test accuracy measured right after training.

    python -m lwt.zoo list                 # what is shipped
    python -m lwt.zoo train resnet20       # reproduce a checkpoint from scratch
    python -m lwt.zoo verify               # re-check every sha256 and test accuracy
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from . import data, models, pipelines, train

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Recipe:
    """How a baseline is trained: SGD-Nesterov + one-cycle, cross-entropy."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    label_smoothing: float = 0.0
    seed: int = 0


RECIPES: dict[str, Recipe] = {
    "lenet300": Recipe(epochs=20, batch_size=128, lr=0.05, weight_decay=1e-4),
    "lenet5": Recipe(epochs=15, batch_size=128, lr=0.05, weight_decay=5e-4),
    "resnet20": Recipe(epochs=40, batch_size=128, lr=0.15, weight_decay=5e-4),
}


def names() -> list[str]:
    """Every shippable checkpoint: the baselines, then the pipelines' results."""
    return [*RECIPES, *pipelines.PIPELINES]


def _check(name: str) -> None:
    if name not in names():
        raise ValueError(f"pretrained name {name!r} unknown; choose from {names()}")


def architecture(name: str) -> nn.Module:
    """A fresh model with the shapes of checkpoint ``name``."""
    _check(name)
    return models.create_model(name) if name in RECIPES else pipelines.build(name)


def base_of(name: str) -> str:
    """The baseline a checkpoint derives from (itself for a baseline)."""
    _check(name)
    return name if name in RECIPES else pipelines.PIPELINES[name].base


def checkpoint_dir() -> Path:
    """``$LWT_CHECKPOINT_DIR`` if set, else ``<repo>/data/checkpoints``."""
    default = data.REPO_ROOT / "data" / "checkpoints"
    return Path(os.environ.get("LWT_CHECKPOINT_DIR", default))


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(directory: Path | None = None) -> dict[str, dict]:
    """The manifest of a checkpoint folder (empty if there is none)."""
    path = (directory or checkpoint_dir()) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def load_pretrained(name: str, directory: str | Path | None = None) -> nn.Module:
    """Load a shipped baseline, after checking its sha256 against the manifest.

    Args:
        name: a baseline (``lenet300``, ``lenet5``, ``resnet20``) or a pipeline
            result (``lenet5-pruned``, ...): see :func:`names`.
        directory: checkpoint folder (default :func:`checkpoint_dir`).

    Returns:
        The model in eval mode on the CPU.

    Raises:
        ValueError: unknown name, or the file's sha256 differs from the manifest.
        FileNotFoundError: no manifest entry or no file (says how to reproduce it).
    """
    _check(name)
    directory = Path(directory) if directory is not None else checkpoint_dir()
    entry = read_manifest(directory).get(name)
    path = directory / (entry["file"] if entry else f"{name}.pt")
    if entry is None or not path.exists():
        raise FileNotFoundError(
            f"no checkpoint for {name!r} in {directory}; "
            f"make one with: python -m lwt.zoo train {name}"
        )
    digest = sha256_of(path)
    if digest != entry["sha256"]:
        raise ValueError(
            f"{path}: sha256 {digest[:12]}… does not match the manifest "
            f"({entry['sha256'][:12]}…): corrupted or tampered checkpoint"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = architecture(name)
    model.load_state_dict(state)
    return model.eval()


def train_baseline(
    name: str, epochs: int | None = None, subset: int | None = None, quiet: bool = False
) -> tuple[nn.Module, float, list[dict]]:
    """Train a baseline from scratch by its recipe: (model, test accuracy, history)."""
    if name not in RECIPES:
        raise ValueError(
            f"pretrained name {name!r} unknown; choose from {sorted(RECIPES)}"
        )
    r = RECIPES[name]
    epochs = r.epochs if epochs is None else epochs
    train.set_seed(r.seed)
    model = models.create_model(name)
    tr, te = data.get_loaders(
        models.dataset_of(name), r.batch_size, subset=subset, seed=r.seed
    )
    opt, sched = train.sgd_onecycle(model, epochs * len(tr), r.lr, r.weight_decay)
    loss = nn.CrossEntropyLoss(label_smoothing=r.label_smoothing)
    history = train.train(
        model, tr, epochs, opt, sched, loss, test_loader=te, quiet=quiet
    )
    model.cpu()
    return model, train.evaluate(model, te, "cpu"), history


def make_checkpoint(
    name: str, epochs: int | None = None
) -> tuple[nn.Module, float, int]:
    """Train a baseline, or run a pipeline on its shipped baseline.

    Returns:
        ``(model, full test-set accuracy, epochs)``.
    """
    if name in RECIPES:
        model, acc, hist = train_baseline(name, epochs)
        return model, acc, len(hist)
    _check(name)
    model = pipelines.run(name, load_pretrained(base_of(name)), quiet=False)
    _, test = data.get_loaders(models.dataset_of(base_of(name)))
    return model, train.evaluate(model, test), pipelines.PIPELINES[name].epochs


def save_checkpoint(
    name: str,
    model: nn.Module,
    accuracy: float,
    epochs: int,
    seconds: float,
    directory: Path | None = None,
) -> dict:
    """Write ``<name>.pt`` (state dict) and its manifest entry; returns the entry."""
    directory = directory or checkpoint_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.pt"
    torch.save(model.state_dict(), path)
    entry = {
        "file": path.name,
        "sha256": sha256_of(path),
        "bytes": path.stat().st_size,
        "test_accuracy": round(accuracy, 4),
        "epochs": epochs,
        "recipe": asdict(RECIPES[name]) if name in RECIPES else pipelines.recipe(name),
        "dataset": models.dataset_of(base_of(name)),
        "train_seconds": round(seconds),
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {train.default_device().type}",
        "command": f"python -m lwt.zoo train {name}",
    }
    manifest = read_manifest(directory)
    manifest[name] = entry
    (directory / MANIFEST).write_text(
        json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    )
    return entry


def _main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m lwt.zoo", description=__doc__.split("\n")[0]
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="make a checkpoint from scratch and ship it")
    t.add_argument("name", choices=names())
    t.add_argument("--epochs", type=int, help="override the recipe (for trials)")
    t.add_argument(
        "--out", type=Path, help="checkpoint folder (default data/checkpoints)"
    )
    sub.add_parser("list", help="show the manifest")
    sub.add_parser("verify", help="check sha256 and full test-set accuracy of each")
    args = p.parse_args(argv)
    if args.cmd == "train":
        start = time.perf_counter()
        model, acc, epochs = make_checkpoint(args.name, args.epochs)
        entry = save_checkpoint(
            args.name, model, acc, epochs, time.perf_counter() - start, args.out
        )
        print(json.dumps(entry, indent=2))
    elif args.cmd == "list":
        print(json.dumps(read_manifest(), indent=2))
    else:
        for name, entry in read_manifest().items():
            model = load_pretrained(name)
            _, te = data.get_loaders(models.dataset_of(base_of(name)))
            acc = train.evaluate(model, te)
            print(
                f"{name}: sha256 ok, test accuracy {acc:.4f} "
                f"(manifest {entry['test_accuracy']:.4f})"
            )


if __name__ == "__main__":
    _main()
