import json
import os
import pickle
import shutil
import subprocess
import sys

import pytest
import torch

from lwt import data, measure, models, recipes, train, zoo

TARGETS = {
    "lenet300": 0.982,
    "lenet5": 0.991,
    "resnet20": 0.900,
    # trained from scratch in later lessons (floors a little under the shipped runs)
    "resnet20-crelu": 0.905,
    "resnet20-crelu-all": 0.895,
    "student-scratch": 0.855,
    "resnet14w8-scratch": 0.84,
    "mlp1200-teacher": 0.99,
    "mlp800-scratch": 0.98,
    "rotmnist-z2cnn": 0.94,
    "rotmnist-p4cnn": 0.97,
    "cct-cifar": 0.85,  # issue 33's target (notebook 08)
}


# Quick mode (make test) re-measures the full test set of every MNIST checkpoint and of
# the resnet20 baseline; the other CIFAR-10 checkpoints (~1 min each on 2 cores) are
# checked by sha256 and on a fixed 1,000-image subset. Full mode re-measures all.
FULL_IN_QUICK = {"resnet20"}


def check_accuracy(name, model, entry, floor=None):
    """Re-measure ``name``'s test accuracy against its manifest entry (see above)."""
    try:
        full = data.load_dataset(recipes.dataset_of(name), False, download=False)
    except FileNotFoundError:
        pytest.skip("dataset not available (set LWT_DATA_DIR)")
    if train.is_quick() and full.name == "cifar10" and name not in FULL_IN_QUICK:
        sub = data.load_dataset("cifar10", False, subset=1000, seed=0, download=False)
        acc = train.evaluate(model, data.BatchLoader(sub, 500))
        assert acc == pytest.approx(entry["test_accuracy"], abs=0.025)
        return
    acc = train.evaluate(model, data.BatchLoader(full, 500))
    assert acc == pytest.approx(entry["test_accuracy"], abs=1e-4)
    if floor is not None:
        assert acc >= floor


@pytest.fixture
def saved(tmp_path):
    """A fresh lenet300 checkpoint written by save_checkpoint into tmp_path."""
    model = models.create_model("lenet300")
    entry = zoo.save_checkpoint(
        "lenet300", recipes.Result(model, 1), 0.5, 2.0, tmp_path
    )
    return tmp_path, model, entry


def test_save_and_load_roundtrip(saved):
    folder, model, entry = saved
    assert entry["sha256"] == zoo.sha256_of(folder / "lenet300.pt")
    assert entry["bytes"] == (folder / "lenet300.pt").stat().st_size
    assert zoo.read_manifest(folder)["lenet300"]["test_accuracy"] == 0.5
    loaded = zoo.load_pretrained("lenet300", folder)
    assert not loaded.training
    pairs = zip(model.state_dict().values(), loaded.state_dict().values(), strict=True)
    for a, b in pairs:
        assert torch.equal(a, b)


def test_large_checkpoints_ship_in_float16_and_load_as_float32(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "MAX_FP32_BYTES", 1000)  # lenet300 is ~1 MB
    model = models.create_model("lenet300")
    entry = zoo.save_checkpoint(
        "lenet300", recipes.Result(model, 1), 0.5, 1.0, tmp_path
    )
    assert entry["storage"] == "float16"
    assert entry["bytes"] < measure.serialized_bytes(model) * 0.55
    stored = torch.load(tmp_path / "lenet300.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in stored.values())
    loaded = zoo.load_pretrained("lenet300", tmp_path)
    for a, b in zip(model.parameters(), loaded.parameters(), strict=True):
        assert b.dtype == torch.float32 and torch.equal(b, a.half().float())


def test_corrupted_checkpoint_is_refused(saved):
    folder, _, _ = saved
    raw = bytearray((folder / "lenet300.pt").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (folder / "lenet300.pt").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="sha256"):
        zoo.load_pretrained("lenet300", folder)


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_tampered_checkpoint_with_matching_hash_cannot_run_code(saved, monkeypatch):
    folder, _, _ = saved
    monkeypatch.chdir(folder)
    torch.save({"fc1.weight": Evil()}, folder / "lenet300.pt")
    manifest = zoo.read_manifest(folder)
    manifest["lenet300"]["sha256"] = zoo.sha256_of(folder / "lenet300.pt")
    (folder / zoo.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(pickle.UnpicklingError):
        zoo.load_pretrained("lenet300", folder)
    assert not (folder / "pwned").exists()


def test_missing_and_unknown(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m lwt.zoo train lenet5"):
        zoo.load_pretrained("lenet5", tmp_path)
    with pytest.raises(ValueError, match="unknown"):
        zoo.load_pretrained("alexnet")
    with pytest.raises(ValueError, match="unknown"):
        zoo.make_checkpoint("alexnet")


def test_checkpoint_dir_env(monkeypatch, tmp_path, saved):
    folder, _, _ = saved
    monkeypatch.setenv("LWT_CHECKPOINT_DIR", str(folder))
    assert zoo.checkpoint_dir() == folder
    assert isinstance(zoo.load_pretrained("lenet300"), models.LeNet300100)


def test_make_checkpoint_quick_run():
    try:
        result, acc = zoo.make_checkpoint("lenet300", epochs_scale=0.05, subset=4096)
    except FileNotFoundError:
        pytest.skip("MNIST not available")
    assert result.epochs == 1 and 0.0 <= acc <= 1.0
    assert acc > 0.7  # 32 steps on 4096 images already beat chance (0.1)


def test_cli_list():
    out = subprocess.run(
        [sys.executable, "-m", "lwt.zoo", "list"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) == zoo.read_manifest()


def test_manifest_records_recipe_and_what_was_done():
    manifest = zoo.read_manifest()
    assert set(manifest) == set(recipes.SHIPPED) - recipes.TRAINING
    assert recipes.TRAINING <= set(recipes.SHIPPED)
    for name, entry in manifest.items():
        assert entry["recipe"] == recipes.describe(name), name
        assert entry["command"] == f"python -m lwt.zoo train {name}"
        assert entry["dataset"] == recipes.dataset_of(name)
        path = zoo.checkpoint_dir() / entry["file"]
        assert zoo.sha256_of(path) == entry["sha256"]
        if entry["recipe"].get("validation", 0) > 0:  # one run per rate, best kept
            rates = entry["recipe"]["lr"]
            runs = entry["schedule"]
            assert [r["lr"] for r in runs] == (rates if isinstance(rates, list)
                                               else [rates]), name  # fmt: skip
            chosen = [r for r in runs if r["chosen"]]
            assert len(chosen) == 1, name
            best = max(r["validation_accuracy"] for r in runs)
            assert chosen[0]["validation_accuracy"] == best, name
        cfg = recipes.config(name)
        method = recipes.method(name)
        if isinstance(method, recipes.CodedMethod):  # its own format (.lwtc, .lwtq)
            assert entry["storage"] == method.SUFFIX.lstrip("."), name
            assert path.suffix == method.SUFFIX, name
            state = method.from_bytes(path.read_bytes())
            floats = {v.dtype for v in state.values() if v.is_floating_point()}
            # .lwtc decodes to float32; .lwtq keeps the float16 it stores (the tensors
            # it does not quantize), which load_pretrained copies into float32 weights
            assert floats <= {torch.float32, torch.float16}, name
            assert cfg.METHOD != "deepc" or floats == {torch.float32}, name
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            floats = {v.dtype for v in state.values() if v.is_floating_point()}
            assert floats == {getattr(torch, entry["storage"])}, name
        if cfg.METHOD in ("iterative", "trimming", "deepc", "combined"):  # all stages
            assert entry["epochs"] == sum(s.get("epochs", 0) for s in entry["schedule"])
        if cfg.METHOD in ("iterative", "trimming"):
            assert entry["epochs"] == sum(s["epochs"] for s in entry["schedule"])
            assert entry["epochs"] == cfg.steps * cfg.epochs_per_step + cfg.final_epochs
        elif cfg.METHOD == "combined":  # distillation + QAT
            assert entry["epochs"] == cfg.epochs + cfg.qat_epochs
        elif cfg.METHOD == "weightonly":  # one-shot: no training
            assert entry["epochs"] == 0
        elif cfg.METHOD == "lowrank-procedure":  # steps on cycled calibration images
            assert entry["epochs"] == 0
            curve = entry["schedule"][0]["curve"]
            assert [c["step"] for c in curve] == [
                cfg.steps * (k + 1) for k in range(len(cfg.ranks))
            ], name
        else:
            assert entry["epochs"] == cfg.epochs


def test_shipped_checkpoints_load_without_compression_code(monkeypatch):
    from lwt import pruning

    def refuse(*args, **kwargs):
        raise AssertionError("loading ran compression code")

    for fn in (
        "prune_resnet_blocks",
        "magnitude_prune",
        "iterative_prune",
        "prune_neurons",
        "gradual_prune_neurons",
        "prune_channels",
    ):
        monkeypatch.setattr(pruning, fn, refuse)
    monkeypatch.setattr(pruning.structured, "filters_to_keep", refuse)
    monkeypatch.setattr(pruning.structured, "prune_channels", refuse)
    for name in zoo.read_manifest():
        zoo.load_pretrained(name)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_shipped_checkpoint_verifies_and_reaches_target(name):
    entry = zoo.read_manifest().get(name)
    assert entry is not None, f"{name} checkpoint is not shipped"
    model = zoo.load_pretrained(name)
    assert entry["test_accuracy"] >= TARGETS[name]
    check_accuracy(name, model, entry, TARGETS[name])


def test_copied_folder_still_verifies(tmp_path):
    shutil.copytree(zoo.checkpoint_dir(), tmp_path / "ck")
    for name in zoo.read_manifest(tmp_path / "ck"):
        zoo.load_pretrained(name, tmp_path / "ck")


@pytest.mark.parametrize(
    "name",
    [
        n
        for n in recipes.SHIPPED
        if recipes.base_of(n) is not None and n not in recipes.TRAINING
    ],  # fmt: skip
)
def test_shipped_compressed_checkpoint_verifies_and_is_compressed(name):
    entry = zoo.read_manifest().get(name)
    assert entry is not None, f"{name} checkpoint is not shipped"
    model = zoo.load_pretrained(name)
    base_arch = recipes.model_of(zoo.base_of(name))  # e.g. mlp1200-teacher -> mlp1200
    base = models.create_model(base_arch)
    shape = models.input_shape_of(base_arch)
    method = recipes.config(name).METHOD
    if method == "iterative":
        assert measure.count_params(model) / measure.count_nonzero(model) >= 12
    elif method == "trimming":  # a smaller dense MLP: >= 3x fewer parameters
        assert measure.count_params(base) / measure.count_params(model) >= 3
        assert measure.count_nonzero(model) == measure.count_params(model)
    elif method == "distill":  # CIFAR students <= 20 % of ResNet-20; Hinton's MLPs 54 %
        share = 0.2 if base_arch == "resnet20" else 0.6
        assert measure.count_params(model) <= share * measure.count_params(base)
    elif method == "qat":  # every weight on a 4-bit grid: at most 15 distinct values
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                assert m.weight[0].unique().numel() <= 15
    elif method == "deepc":  # Deep Compression beaten: >= 50x at <= 0.1 pt (nb 06)
        dense = zoo.read_manifest()[base_arch]
        assert dense["bytes"] / entry["bytes"] >= 50
        assert dense["test_accuracy"] - entry["test_accuracy"] <= 0.001 + 1e-9
        assert zoo.sha256_of(zoo.checkpoint_dir() / entry["file"]) == entry["sha256"]
    elif (
        method == "weightonly"
    ):  # packed 4-bit file >= 6x below fp32 torch.save (nb 08)
        fp32 = len(measure.state_dict_bytes(zoo.load_pretrained(zoo.base_of(name))))
        assert fp32 / entry["bytes"] >= 6
    elif method == "nmsparse":  # 2 of every 4 inputs of the encoder's linears (nb 08)
        for n, m in model.named_modules():
            if n.startswith("blocks.") and isinstance(m, torch.nn.Linear):
                assert (
                    (m.weight != 0).reshape(m.out_features, -1, 4).sum(-1) <= 2
                ).all()
    elif method == "heads":  # heads removed for real; speed measured in notebook 08
        assert measure.count_params(model) < measure.count_params(base)
    else:
        assert measure.count_macs(base, shape) / measure.count_macs(model, shape) >= 1.5
    check_accuracy(name, model, entry)


def test_lesson_targets_hold_in_the_manifest():
    """Issue targets between shipped checkpoints (each accuracy is re-measured by the
    verification tests above)."""
    acc = {n: e["test_accuracy"] for n, e in zoo.read_manifest().items()}
    # distillation: >= +1.0 pt over the same student trained alone (notebook 05)
    assert acc["student-kd"] - acc["student-scratch"] >= 0.010
    # CReLU in the early layers: <= 1.0 pt below the baseline (notebook 04)
    assert acc["resnet20"] - acc["resnet20-crelu"] <= 0.010
    # Hinton et al.'s MNIST trio: distillation closes >= 60 % of the error gap
    err = {n: 1 - acc[n] for n in ("mlp1200-teacher", "mlp800-scratch", "mlp800-kd")}
    gap = err["mlp800-scratch"] - err["mlp1200-teacher"]
    assert err["mlp800-scratch"] - err["mlp800-kd"] >= 0.6 * gap > 0
    # the transformer (notebook 08): >= 85 %, and the compressed models within 1.0 pt
    # of it (issue 33's targets; notebook 08 gives each paired interval)
    assert acc["cct-cifar"] >= 0.85
    for name in ("cct-cifar-w4", "cct-cifar-2of4", "cct-cifar-heads"):
        assert acc["cct-cifar"] - acc[name] <= 0.010, name
    # rotated MNIST: the p4 model, no more parameters, >= 30 % fewer errors (nb 04)
    rot = {n: 1 - acc[f"rotmnist-{n}"] for n in ("z2cnn", "p4cnn")}
    assert rot["p4cnn"] <= 0.7 * rot["z2cnn"]
    z2, p4 = (zoo.load_pretrained(f"rotmnist-{n}") for n in ("z2cnn", "p4cnn"))
    assert measure.count_params(p4) <= measure.count_params(z2)


def test_verify_reports_an_accuracy_that_differs_from_the_manifest(tmp_path, capsys):
    """Issue 29: ``python -m lwt.zoo verify`` exited 0 on a mismatch."""
    folder = tmp_path / "ck"
    shutil.copytree(zoo.checkpoint_dir(), folder)
    assert zoo.verify(["lenet300"], folder) == []
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["lenet300"]["test_accuracy"] -= 0.01
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert zoo.verify(["lenet300"], folder) == ["lenet300"]
    assert "MISMATCH" in capsys.readouterr().out
