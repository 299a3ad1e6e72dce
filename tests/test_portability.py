"""The int8 files on a CPU without VNNI, run for real (issue 27).

ONNX Runtime picks its int8 kernels from the CPU's features (``cpuid``). QEMU's
user-mode emulator (``qemu-x86_64 -cpu Haswell``: AVX2, no AVX-512, no VNNI, no AMX)
runs this environment's Python and ONNX Runtime as on such a CPU, so the saturating
``vpmaddubsw`` kernels of an AVX2 laptop run here too, on any x86-64 machine (slowly:
accuracy, never speed). A control proves it: an 8-bit-weight file computes other logits
under the emulator, a 7-bit one the same.

Skipped, with one line, where there is no ``qemu-x86_64`` (``make test`` installs
Debian's ``qemu-user`` as root) or the machine is not x86-64; CI sets
``LWT_REQUIRE_QEMU=1`` and fails instead. ``LWT_QEMU`` names another emulator binary.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from lwt import data, deploy, zoo

pytest.importorskip("onnxruntime")

QEMU = shutil.which(os.environ.get("LWT_QEMU", "qemu-x86_64"))
CPU_MODEL = "Haswell"  # AVX2 and FMA; no AVX-512, VNNI or AMX
IMAGES = 500  # of the CIFAR-10 test set, for the shipped file

RUN = textwrap.dedent("""
    import sys
    import numpy as np
    import onnxruntime as ort
    path, inputs, out = sys.argv[1:4]
    opts = ort.SessionOptions()  # ONNX Runtime's defaults, as other programs run it
    opts.intra_op_num_threads, opts.log_severity_level = 1, 3
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    x = np.load(inputs)
    name = sess.get_inputs()[0].name
    np.save(out, np.concatenate([sess.run(None, {name: x[i:i + 100]})[0]
                                 for i in range(0, len(x), 100)]))
""")


@pytest.fixture(scope="module")
def emulate(tmp_path_factory):
    """``emulate(path, x) -> logits`` of ONNX Runtime on an emulated AVX2-only CPU."""
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("not an x86-64 machine: AVX2's saturating kernels do not apply")
    if QEMU is None:
        why = ("no AVX2-only check: needs qemu-x86_64 (Debian: apt-get install "
               "qemu-user; make test installs it as root)")  # fmt: skip
        if os.environ.get("LWT_REQUIRE_QEMU") == "1":
            pytest.fail(why + " (LWT_REQUIRE_QEMU=1)", pytrace=False)
        pytest.skip(why)
    folder = tmp_path_factory.mktemp("qemu")
    script = folder / "run.py"
    script.write_text(RUN)

    def run(path, x: torch.Tensor) -> torch.Tensor:
        np.save(folder / "x.npy", x.numpy())
        done = subprocess.run(
            [QEMU, "-cpu", CPU_MODEL, sys.executable, "-s", str(script), str(path),
             str(folder / "x.npy"), str(folder / "y.npy")],
            capture_output=True, text=True, timeout=900,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return torch.from_numpy(np.load(folder / "y.npy"))

    return run


def _native(path, x: torch.Tensor) -> torch.Tensor:
    return deploy.OrtModel(path, precise=False)(x)


def test_the_emulator_runs_the_saturating_kernels(emulate, lenet_int8_files):
    """Control: 8-bit weights compute other logits without VNNI, 7-bit the same."""
    calib, files = lenet_int8_files
    x = torch.cat(calib)
    d8 = (emulate(files[8], x) - _native(files[8], x)).abs().max()
    d7 = (emulate(files[7], x) - _native(files[7], x)).abs().max()
    assert d8 > 1e-2, f"8-bit file: max logit difference {d8:.2e} (no saturation seen)"
    assert d7 < 1e-4, f"7-bit file: max logit difference {d7:.2e}"


def test_shipped_deployed_files_score_the_same_without_vnni(emulate):
    test = data.load_dataset("cifar10", False, download=False)
    batches = list(data.BatchLoader(test, 500))
    x = torch.cat([b for b, _ in batches])[:IMAGES]
    y = torch.cat([t for _, t in batches])[:IMAGES]
    for name, entry in zoo.read_manifest().items():
        if "deployed" not in entry:
            continue
        path = zoo.deployed_path(name)
        native, avx2 = _native(path, x), emulate(path, x)
        same = (native.argmax(1) == avx2.argmax(1)).float().mean().item()
        acc = {k: (v.argmax(1) == y).float().mean().item()
               for k, v in (("native", native), ("avx2", avx2))}  # fmt: skip
        assert same == 1.0, (name, same, acc)
        assert (native - avx2).abs().max() < 1e-4, name
