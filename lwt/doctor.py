"""Pre-flight check of a learner's machine (受講前チェック): can this course run here?

    python -m lwt.doctor        (or: make check)

Checks, each problem printed with the command that fixes it:

- Python and the packages of ``requirements.txt`` (importable, versions shown);
- the datasets: MNIST and CIFAR-10 found under ``$LWT_DATA_DIR`` and validated
  (shapes, counts, label ranges; nothing is downloaded);
- every shipped checkpoint's sha256 against the manifest;
- threads, and a ~10-second speed probe (ResNet-20 training steps) that predicts each
  notebook's full-mode time on this machine from its time on the course machine.

Exit status 1 when the course cannot run (a missing package, dataset or checkpoint).
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import time

import torch

from . import cpu, data, models, zoo

# import name -> pip name, for the packages requirements.txt installs
PACKAGES = {
    "torch": "torch", "torchvision": "torchvision", "numpy": "numpy",
    "matplotlib": "matplotlib", "ipywidgets": "ipywidgets", "jupyterlab": "jupyterlab",
    "nbval": "nbval", "onnx": "onnx", "onnxruntime": "onnxruntime",
    "onnxscript": "onnxscript", "torch_pruning": "torch-pruning",
    "tensorly": "tensorly", "openvino": "openvino",
}  # fmt: skip
# Full-mode time of each notebook on the 2-core course machine (s), measured when it
# was last executed, and what speed_probe() measures there (images/s).
REFERENCE_SECONDS = {"00": 55, "01": 481, "02": 436, "03": 479, "04": 191, "05": 209,
                     "06": 380, "07": 337}  # fmt: skip
REFERENCE_IMAGES_PER_S = 215.0  # speed_probe() on the course machine, 2 threads
FIX_PACKAGES = "pip install -r requirements.txt   (or: make lab, which installs them)"
FIX_DATA = (
    "make data (online: downloads and validates them), or put the MNIST and "
    "CIFAR-10 files under one folder (layout: data/README.md) "
    "and export LWT_DATA_DIR=/that/folder"
)
FIX_CHECKPOINTS = "git checkout data/checkpoints   (or: python -m lwt.zoo train NAME)"


def check_packages() -> list[str]:
    """One line per package; problems start with ``PROBLEM``."""
    lines = [f"python {platform.python_version()} ({sys.executable})"]
    for module, pip_name in PACKAGES.items():
        try:
            version = getattr(importlib.import_module(module), "__version__", "?")
            lines.append(f"  {pip_name:14s} {version}")
        except ImportError:
            lines.append(f"PROBLEM: {pip_name} is missing: {FIX_PACKAGES}")
    return lines


def check_data() -> list[str]:
    """Each dataset split found and validated, or a problem with the fix."""
    lines = [f"data folder: {data.data_root()}"]
    for name in ("mnist", "cifar10"):
        for train in (True, False):
            split = "train" if train else "test"
            try:
                d = data.load_dataset(name, train, download=False)
                lines.append(f"  {name} {split}: {len(d.labels):,} images, validated")
            except (FileNotFoundError, ValueError) as e:
                lines.append(f"PROBLEM: {name} {split}: {e}. Fix: {FIX_DATA}")
    return lines


def check_checkpoints() -> list[str]:
    """Every manifest entry's file present with the recorded sha256."""
    folder = zoo.checkpoint_dir()
    manifest = zoo.read_manifest(folder)
    if not manifest:
        return [f"PROBLEM: no manifest in {folder}. Fix: {FIX_CHECKPOINTS}"]
    bad = []
    for name, entry in manifest.items():
        path = folder / entry["file"]
        if not path.exists() or zoo.sha256_of(path) != entry["sha256"]:
            bad.append(name)
    lines = [
        f"checkpoints: {len(manifest) - len(bad)} of {len(manifest)} verified (sha256)"
    ]
    lines += [f"PROBLEM: {n} missing or corrupted. Fix: {FIX_CHECKPOINTS}" for n in bad]
    return lines


def speed_probe(seconds: float = 10.0) -> float:
    """ResNet-20 training speed in images/s (fp32, batch 64, the current threads)."""
    torch.manual_seed(0)
    model = models.create_model("resnet20")
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    done, start = 0, None
    while start is None or time.perf_counter() - start < seconds:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if start is None:  # the first step warms up (allocations, kernel choice)
            start = time.perf_counter()
        else:
            done += len(x)
    return done / (time.perf_counter() - start)


def predicted_minutes(images_per_s: float) -> dict[str, float]:
    """Each notebook's predicted full-mode time here (minutes), scaled by speed."""
    scale = REFERENCE_IMAGES_PER_S / images_per_s
    return {nb: s * scale / 60 for nb, s in REFERENCE_SECONDS.items()}


def main(probe_seconds: float = 10.0) -> int:
    """Run every check and print a report; returns the exit status."""
    lines = check_packages()
    lines += check_data() + check_checkpoints()
    lines.append(f"{cpu.describe_cpu()}; {os.cpu_count()} CPUs, torch uses "
                 f"{torch.get_num_threads()} threads")  # fmt: skip
    speed = speed_probe(probe_seconds)
    pred = predicted_minutes(speed)
    lines.append(f"speed probe: ResNet-20 trains at {speed:.0f} images/s "
                 f"(course machine: {REFERENCE_IMAGES_PER_S:.0f})")  # fmt: skip
    per_nb = ", ".join(f"{nb} {m:.0f} min" for nb, m in pred.items())
    lines.append(f"predicted full-mode time per notebook: {per_nb}")
    problems = [ln for ln in lines if ln.startswith("PROBLEM")]
    lines.append(
        f"{len(problems)} problem(s)" if problems else "ready: no problems found"
    )
    print("\n".join(lines))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
