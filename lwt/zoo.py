"""Shipped checkpoints: verified loading and reproduction by their recipes.

Checkpoints live in ``data/checkpoints/`` (``$LWT_CHECKPOINT_DIR`` overrides; an
installed package ships them in ``lwt/checkpoints/``) beside ``manifest.json``, which
records for each one the file's sha256 and size, the recipe (``lwt.recipes``), what
the run really did (total epochs, stages), the architecture to rebuild, and the test
accuracy measured right after training.

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
from pathlib import Path

import torch
from torch import nn

from . import cpu, data, deploy, recipes, train

MANIFEST = "manifest.json"
# The repository keeps files under 5 MB: a larger state dict ships in float16 (its
# accuracy is measured with the rounded weights; loading returns float32).
MAX_FP32_BYTES = 5_000_000


def _storage(model: nn.Module) -> str:
    """``"float16"`` for a model whose float32 state dict exceeds ``MAX_FP32_BYTES``."""
    n = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return "float16" if n > MAX_FP32_BYTES else "float32"


def names() -> list[str]:
    """Every shippable checkpoint: the baselines, then the lessons' results."""
    return list(recipes.SHIPPED)


def base_of(name: str) -> str:
    """The baseline a checkpoint derives from (itself for a baseline)."""
    return recipes.resolve(name).base or name


def checkpoint_dir() -> Path:
    """``$LWT_CHECKPOINT_DIR`` if set, else ``<repo>/data/checkpoints`` in a source
    checkout, else the ``lwt/checkpoints`` folder an installed package ships."""
    if "LWT_CHECKPOINT_DIR" in os.environ:
        return Path(os.environ["LWT_CHECKPOINT_DIR"])
    if data.SOURCE_CHECKOUT:
        return data.REPO_ROOT / "data" / "checkpoints"
    return Path(__file__).resolve().parent / "checkpoints"


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


def load_pretrained(
    name: str | recipes.Recipe, directory: str | Path | None = None
) -> nn.Module:
    """Load a shipped baseline, after checking its sha256 against the manifest.

    Args:
        name: a baseline (``lenet300``, ``lenet5``, ``resnet20``) or a lesson's
            result (``lenet5-pruned``, ...): see :func:`names`.
        directory: checkpoint folder (default :func:`checkpoint_dir`).

    Returns:
        The model in eval mode on the CPU.

    Raises:
        ValueError: unknown name, or the file's sha256 differs from the manifest.
        FileNotFoundError: no manifest entry or no file (says how to reproduce it).
    """
    recipe = _resolved(name)
    directory, entry = _entry(recipe, directory)
    path = directory / entry["file"]
    if not path.exists():
        raise FileNotFoundError(_missing(recipe.name, directory))
    _verified(path, entry["sha256"])
    if isinstance(recipe.method, recipes.CodedMethod):  # its own format (e.g. .lwtc)
        state = recipe.method.from_bytes(path.read_bytes())
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    model = recipe.build(entry.get("arch"))
    model.load_state_dict(state)  # float16 storage is copied into float32 weights
    return model.eval()


def _resolved(name: str | recipes.Recipe) -> recipes.Recipe:
    """``name`` looked up once (a :class:`recipes.Recipe` passes through)."""
    return name if isinstance(name, recipes.Recipe) else recipes.resolve(name)


def _missing(name: str, directory: Path) -> str:
    return (
        f"no checkpoint for {name!r} in {directory}; "
        f"make one with: python -m lwt.zoo train {name}"
    )


def _entry(recipe: recipes.Recipe, directory: str | Path | None) -> tuple[Path, dict]:
    """The checkpoint folder and the recipe's manifest entry (FileNotFoundError with
    the command that makes it if there is none)."""
    directory = Path(directory) if directory is not None else checkpoint_dir()
    entry = read_manifest(directory).get(recipe.name)
    if entry is None:
        raise FileNotFoundError(_missing(recipe.name, directory))
    return directory, entry


def _verified(path: Path, digest: str) -> Path:
    found = sha256_of(path)
    if found != digest:
        raise ValueError(
            f"{path}: sha256 {found[:12]}… does not match the manifest "
            f"({digest[:12]}…): corrupted or tampered checkpoint"
        )
    return path


def deployed_path(
    name: str | recipes.Recipe, directory: str | Path | None = None
) -> Path:
    """The deployed file of checkpoint ``name`` (e.g. ``resnet20-combined.onnx``, an
    ONNX Runtime int8 file), after checking its sha256 against the manifest's
    ``deployed`` entry; run it with ``lwt.deploy.OrtModel``.

    Raises:
        ValueError: unknown name, a checkpoint without a deployed file, or a sha256
            mismatch.
        FileNotFoundError: no manifest entry or no file.
    """
    recipe = _resolved(name)
    directory, entry = _entry(recipe, directory)
    if "deployed" not in entry:
        raise ValueError(
            f"{recipe.name!r} ships no deployed file (only {entry['file']})"
        )
    path = directory / entry["deployed"]["file"]
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; remake it: {entry['command']}")
    return _verified(path, entry["deployed"]["sha256"])


def make_checkpoint(
    name: str, *, epochs_scale: float = 1.0, subset: int | None = None
) -> tuple[recipes.Result, float]:
    """Run checkpoint ``name``'s recipe (on its shipped baseline, if it has one).

    Returns:
        ``(result, full test-set accuracy)``.
    """
    recipe = recipes.resolve(name)
    result = recipe.run(
        load_pretrained(recipe.base) if recipe.base else None,
        epochs_scale=epochs_scale,
        subset=subset,
        quiet=False,
    )
    coded = isinstance(recipe.method, recipes.CodedMethod)  # measured the file
    if not coded and _storage(result.model) == "float16":  # measure what is stored
        with torch.no_grad():
            for t in result.model.state_dict().values():
                if t.is_floating_point():
                    t.copy_(t.half())
    _, test = data.get_loaders(recipe.dataset)
    return result, train.evaluate(result.model, test)


def _machine(precision: str = "fp32") -> str:
    """Where a checkpoint was trained: CPU architecture, device, GPU and precision
    (``"bf16"``: bfloat16 autocast, as a recipe's schedule records it)."""
    device = train.default_device()
    text = f"{platform.machine()} {device.type}"
    if device.type == "cuda":
        tf32 = torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32
        mode = "bf16 autocast" if precision == "bf16" else "TF32" if tf32 else "fp32"
        text += f" ({torch.cuda.get_device_name()}, {mode})"
    elif device.type == "cpu":
        mode = "bf16 autocast" if precision == "bf16" else "fp32"
        text += f" ({mode}; {cpu.describe_cpu()})"
    return text


def save_checkpoint(
    name: str,
    result: recipes.Result,
    accuracy: float,
    seconds: float,
    directory: Path | None = None,
) -> dict:
    """Write ``<name>.pt`` (state dict; or the file format of the recipe's method, if
    it has one, e.g. ``<name>.lwtc``) and its manifest entry; returns the entry.

    The entry records the file's sha256 and size, the recipe's settings, what the
    run really did (total epochs, the stages), the architecture ``load_pretrained``
    rebuilds the model from, and the storage dtype (float16 above
    ``MAX_FP32_BYTES``: pass the accuracy of the rounded model, as
    :func:`make_checkpoint` does).
    """
    recipe = recipes.resolve(name)
    method = recipe.method
    directory = directory or checkpoint_dir()
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(method, recipes.CodedMethod):  # its own file format (e.g. .lwtc)
        path = directory / f"{name}{method.SUFFIX}"
        storage = method.SUFFIX.lstrip(".")
        path.write_bytes(method.to_bytes(result.model))
    else:
        path = directory / f"{name}.pt"
        storage = _storage(result.model)
        state = result.model.state_dict()
        if storage == "float16":
            state = {
                k: v.half() if v.is_floating_point() else v for k, v in state.items()
            }
        torch.save(state, path)
    entry = {
        "file": path.name,
        "sha256": sha256_of(path),
        "bytes": path.stat().st_size,
        "test_accuracy": round(accuracy, 4),
        "epochs": result.epochs,
        "recipe": recipe.describe(),
        "arch": result.arch,
        "schedule": result.schedule,
        "dataset": recipe.dataset,
        "train_seconds": round(seconds),
        "torch": torch.__version__,
        "machine": _machine(
            next((s["precision"] for s in result.schedule if "precision" in s), "fp32")
        ),
        "command": f"python -m lwt.zoo train {name}",
        "storage": storage,
    }
    if isinstance(method, recipes.DeployedMethod):  # a deployable file beside it
        entry["deployed"] = _deploy(recipe, result.model, directory)
    manifest = read_manifest(directory)
    manifest[name] = entry
    (directory / MANIFEST).write_text(
        json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    )
    return entry


def _deploy(recipe: recipes.Recipe, model: nn.Module, directory: Path) -> dict:
    """Write ``<name><DEPLOY_SUFFIX>`` and measure it on the full test set."""
    path = directory / f"{recipe.name}{recipe.method.DEPLOY_SUFFIX}"
    path.write_bytes(recipe.method.deployed_bytes(recipe.config, model))
    _, test = data.get_loaders(recipe.dataset)
    acc = train.evaluate(deploy.OrtModel(path), test)
    return {
        "file": path.name,
        "sha256": sha256_of(path),
        "bytes": path.stat().st_size,
        "test_accuracy": round(acc, 4),
        "runtime": "onnxruntime int8 (QDQ)",
    }


def _main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m lwt.zoo", description=__doc__.split("\n")[0]
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="make a checkpoint from scratch and ship it")
    t.add_argument("name", choices=names())
    t.add_argument(
        "--epochs-scale", type=float, default=1.0, help="scale every epoch count"
    )
    t.add_argument("--subset", type=int, help="train on this many images (trials)")
    t.add_argument(
        "--out", type=Path, help="checkpoint folder (default data/checkpoints)"
    )
    sub.add_parser("list", help="show the manifest")
    sub.add_parser("verify", help="check sha256 and full test-set accuracy of each")
    args = p.parse_args(argv)
    if args.cmd == "train":
        start = time.perf_counter()
        result, acc = make_checkpoint(
            args.name, epochs_scale=args.epochs_scale, subset=args.subset
        )
        entry = save_checkpoint(
            args.name, result, acc, time.perf_counter() - start, args.out
        )
        print(json.dumps(entry, indent=2))
    elif args.cmd == "list":
        print(json.dumps(read_manifest(), indent=2))
    else:
        return 1 if verify() else 0
    return 0


def verify(names: list[str] | None = None, directory: Path | None = None) -> list[str]:
    """Re-check each checkpoint (and deployed file): sha256, and the full test-set
    accuracy against the manifest's (to its 4 decimals). Prints one line each;
    returns the mismatches (empty: all verified)."""
    manifest = read_manifest(directory)
    bad = []
    for name in names or list(manifest):
        entry, recipe = manifest[name], recipes.resolve(name)  # looked up once
        _, te = data.get_loaders(recipe.dataset)
        runs = [(name, entry, load_pretrained(recipe, directory))]
        if "deployed" in entry:
            ort = deploy.OrtModel(deployed_path(recipe, directory))
            runs.append((f"  {entry['deployed']['file']}", entry["deployed"], ort))
        for label, e, model in runs:
            acc = train.evaluate(model, te)
            ok = abs(acc - e["test_accuracy"]) < 5e-5
            print(f"{label}: sha256 ok, test accuracy {acc:.4f} (manifest "
                  f"{e['test_accuracy']:.4f}){'' if ok else '  MISMATCH'}")  # fmt: skip
            if not ok:
                bad.append(label.strip())
    return bad


if __name__ == "__main__":
    raise SystemExit(_main())
