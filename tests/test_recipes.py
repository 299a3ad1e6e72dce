import copy
import dataclasses

import pytest
import torch
from torch import nn

from lwt import measure, models, pruning, quantization, recipes, zoo


def test_cubic_schedule_is_zhu_gupta_and_ends_at_final():
    steps = pruning.cubic_schedule({"fc1": 0.9}, 4)
    assert [s["fc1"] for s in steps] == pytest.approx(
        [0.9 * (1 - (1 - k / 4) ** 3) for k in range(1, 5)]
    )
    assert steps[-1] == {"fc1": pytest.approx(0.9)}
    assert pruning.cubic_schedule(0.5, 2)[-1] == pytest.approx(0.5)


def test_build_from_recorded_widths_without_compression_code(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("build ran compression code")

    monkeypatch.setattr(pruning, "prune_resnet_blocks", refuse)
    monkeypatch.setattr(pruning.structured, "filters_to_keep", refuse)
    widths = {
        f"layer{i}.{j}": w for i, w in ((1, 8), (2, 16), (3, 40)) for j in range(3)
    }
    filt = recipes.build("resnet20-filters", {"widths": widths})
    assert [
        filt.get_submodule(f"layer{i}.0").conv1.out_channels for i in (1, 2, 3)
    ] == [
        8,
        16,
        40,
    ]
    assert measure.count_macs(filt, (3, 32, 32)) < measure.count_macs(
        models.create_model("resnet20"), (3, 32, 32)
    )
    with pytest.raises(ValueError, match="widths"):
        recipes.build("resnet20-filters", {})
    assert isinstance(recipes.build("lenet5-pruned"), models.LeNet5)
    monkeypatch.setattr(pruning, "prune_channels", refuse)
    mlp = recipes.build("lenet300-neurons", {"widths": {"fc1": 90, "fc2": 40}})
    assert [mlp.fc1.out_features, mlp.fc2.in_features] == [90, 90]
    assert [mlp.fc2.out_features, mlp.fc3.in_features] == [40, 40]
    assert mlp(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_names_methods_and_unknowns():
    assert recipes.base_of("lenet300-pruned") == "lenet300"
    assert recipes.base_of("lenet300") is None
    assert recipes.describe("lenet300-pruned")["method"] == "iterative"
    assert set(recipes.SHIPPED) == set(zoo.names())
    assert zoo.base_of("resnet20-filters") == "resnet20"
    for name in recipes.SHIPPED:
        assert recipes.config(name).METHOD in recipes.METHODS
        assert dataclasses.is_dataclass(recipes.config(name))
        with pytest.raises(dataclasses.FrozenInstanceError):
            recipes.config(name).seed = 1
    with pytest.raises(ValueError, match="unknown; choose from"):
        recipes.build("lenet300-quantized")
    with pytest.raises(ValueError, match="unknown; choose from"):
        zoo.base_of("nope")
    with pytest.raises(ValueError, match="needs base"):
        recipes.run("lenet300-pruned", None)


def test_run_iterative_reaches_final_sparsities_quickly():
    try:
        base = zoo.load_pretrained("lenet300")
        result = recipes.run("lenet300-pruned", base, epochs_scale=0.01, subset=256)
    except FileNotFoundError:
        pytest.skip("MNIST or the lenet300 checkpoint not available")
    amount = recipes.config("lenet300-pruned").amount
    kept = {r["layer"]: r["kept"] for r in pruning.sparsity_report(result.model)}
    for layer, s in amount.items():
        assert kept[layer] == pytest.approx(1 - s, abs=1e-4)
    assert not any(n.endswith("_orig") for n, _ in result.model.named_parameters())
    assert result.epochs == 6 and len(result.schedule) == 6  # 5 steps + final, 1 each
    assert result.schedule[-1]["anneal"] and not result.schedule[0]["anneal"]


def test_run_trimming_reaches_the_widths_and_records_each_step():
    try:
        base = zoo.load_pretrained("lenet300")
        result = recipes.run("lenet300-neurons", base, epochs_scale=0.01, subset=256)
    except FileNotFoundError:
        pytest.skip("MNIST or the lenet300 checkpoint not available")
    widths = recipes.config("lenet300-neurons").widths
    assert result.arch == {"widths": widths}
    assert result.model.fc1.out_features == widths["fc1"]
    steps = [s["widths"]["fc1"] for s in result.schedule]
    assert steps == sorted(steps, reverse=True) and steps[0] < 300
    assert result.epochs == len(result.schedule) == 4  # 3 steps + final, 1 each
    ref = recipes.build("lenet300-neurons", result.arch)
    ref.load_state_dict(result.model.state_dict())  # the recorded shapes fit


def test_run_filters_records_the_widths_it_made():
    try:
        result = recipes.run(
            "resnet20-filters",
            models.create_model("resnet20"),
            epochs_scale=0.1,
            subset=128,
        )
    except FileNotFoundError:
        pytest.skip("CIFAR-10 not available")
    ref = recipes.build("resnet20-filters", result.arch)
    ref.load_state_dict(result.model.state_dict())  # same shapes, strict
    assert set(result.arch["widths"].values()) == {8, 16, 40}
    assert result.model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_run_qat_gives_a_loadable_quantized_model():
    try:
        result = recipes.run(
            "resnet20-qat4",
            models.create_model("resnet20"),
            epochs_scale=0.1,
            subset=256,
        )
    except FileNotFoundError:
        pytest.skip("CIFAR-10 not available")
    ref = recipes.build("resnet20-qat4")
    ref.load_state_dict(result.model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(ref(x), result.model(x))
    w, fq = quantization.quantized_weight(ref.get_submodule("layer1.0.conv1"))
    assert fq.bits == 4 and w.abs().max() <= 7


def test_lowrank_recipes_build_factored_shapes():
    svd = recipes.build("lenet300-svd")
    assert [svd.get_submodule(n)[0].out_features for n in ("fc1", "fc2")] == [32, 20]
    base = models.create_model("lenet300")
    assert measure.count_params(base) / measure.count_params(svd) >= 5
    tucker = recipes.build("resnet20-tucker")
    core = tucker.get_submodule("layer3.0.conv1")[1]  # 1x1 -> 3x3 core -> 1x1
    assert (core.in_channels, core.out_channels, core.stride) == (22, 44, (2, 2))
    ranks = recipes.factorized.stage_ranks("resnet20", {"layer1": 0.5, "layer3": 0.75})
    assert ranks["layer1.2.conv2"] == [8, 8] and ranks["layer3.0.conv1"] == [24, 48]
    assert not any(n.startswith(("layer2", "conv1")) for n in ranks)  # unmatched: dense
    assert measure.count_macs(models.create_model("resnet20"), (3, 32, 32)) >= 2 * (
        measure.count_macs(tucker, (3, 32, 32))
    )


def test_run_lowrank_fine_tunes_the_factored_model():
    try:
        base = zoo.load_pretrained("lenet300")
        result = recipes.run("lenet300-svd", base, epochs_scale=0.1, subset=512)
    except FileNotFoundError:
        pytest.skip("MNIST or the lenet300 checkpoint not available")
    ref = recipes.build("lenet300-svd", result.arch)
    ref.load_state_dict(result.model.state_dict())  # same shapes, strict
    assert result.epochs == 1 and result.arch == {"ranks": {"fc1": 32, "fc2": 20}}


def test_distill_with_alpha_zero_is_exactly_the_scratch_run():
    """Same seed, init, batches and optimizer: with alpha = 0 only the loss could
    differ, and it is plain cross-entropy, so the weights are bit-identical."""
    from dataclasses import replace

    teacher = models.create_model("resnet20").eval()
    kd_cfg = replace(recipes.config("student-kd"), alpha=0.0, epochs=1)
    sc_cfg = replace(recipes.config("student-scratch"), epochs=1)
    try:
        kd = recipes.distill.run(kd_cfg, teacher, subset=128)
        sc = recipes.scratch.run(sc_cfg, None, subset=128)
    except FileNotFoundError:
        pytest.skip("CIFAR-10 not available")
    pairs = zip(
        kd.model.state_dict().items(), sc.model.state_dict().values(), strict=True
    )
    for (k, a), b in pairs:
        assert torch.equal(a, b), k


def test_transferred_recipe_builds_crelu_layers():
    from lwt import transfer

    some = recipes.build("resnet20-crelu")
    every = recipes.build("resnet20-crelu-all")
    kinds = lambda m: sum(isinstance(x, transfer.CReLUConv2d) for x in m.modules())  # noqa: E731
    assert (kinds(some), kinds(every)) == (4, 10)
    dense = measure.count_params(models.create_model("resnet20"))
    assert measure.count_params(every) < measure.count_params(some) < dense


def test_run_deepc_keeps_the_pruning_and_ships_a_decodable_file():
    from lwt import sharing
    from lwt.recipes import deepc

    try:
        base = zoo.load_pretrained("lenet300-pruned")
    except FileNotFoundError:
        pytest.skip("the lenet300-pruned checkpoint not available")
    zeros = {n: (m.weight == 0) for n, m in pruning.prunable_layers(base).items()}
    # the shipped settings plus a further pruning step, on 256 images for one epoch
    cfg = dataclasses.replace(
        recipes.config("lenet300-deepc"),
        prune={"fc1": 0.95},
        prune_steps=1,
        prune_epochs=1,
    )
    try:
        result = deepc.run(cfg, base, epochs_scale=0.01, subset=256)
    except FileNotFoundError:
        pytest.skip("MNIST not available")
    assert result.epochs == 2 and len(result.schedule) == 2
    model, shared = result.model, result.schedule[-1]
    # the widths were chosen on the held-out test images, after the further pruning,
    # by the recorded sweep and the rule (sharing.choose_bits)
    sweep = {n: {int(b): e for b, e in row.items()}
             for n, row in shared["sweep_errors"].items()}  # fmt: skip
    assert shared["bits"] == sharing.choose_bits(
        sweep, shared["unshared_errors"], slack=cfg.slack
    )
    assert set(shared["bits"]) == {"fc1", "fc2", "fc3"}
    assert shared["chosen_on"].startswith("5000 test images")
    for n, m in pruning.prunable_layers(model).items():
        assert m.weight[zeros[n]].eq(0).all(), n  # pruned stays pruned
        nz = m.weight[m.weight != 0]
        assert nz.unique().numel() <= 2 ** shared["bits"][n]
    assert (model.fc1.weight == 0).float().mean() == pytest.approx(0.95, abs=1e-3)
    blob = deepc.to_bytes(model)
    assert sharing.compress(model) == blob
    state = deepc.from_bytes(blob)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    "change, match",
    [({"bits": {"fc1": 3}}, "leave bits empty"),
     ({"choose_on_test": 0}, "bits is empty"),
     ({"choose_on_test": -1}, r"choose_on_test must be in \[0, 9999\]"),
     ({"choose_on_test": 10000}, r"choose_on_test must be in \[0, 9999\]"),
     ({"candidates": ()}, "candidates must be widths in 1..16"),
     ({"candidates": (2, 17)}, "candidates must be widths in 1..16"),
     ({"choose_on_test": True}, "choose_on_test must be in"),
     ({"slack": float("nan")}, "slack must be >= 0"),
     ({"choose_on_test": 0, "bits": {"fc9": 3}}, r"bits names \['fc9'\]"),
     ({"choose_on_test": 0, "bits": {"fc1": 0}}, "bits must be widths in 1..16"),
     ({"slack": -1}, "slack must be >= 0")],
)  # fmt: skip
def test_deepc_refuses_bad_settings_before_anything_trains(change, match):
    from lwt.recipes import deepc

    base = models.create_model("lenet300")
    before = copy.deepcopy(base.state_dict())
    cfg = dataclasses.replace(  # a further pruning step would train first
        recipes.config("lenet300-deepc"), prune={"fc1": 0.95}, prune_steps=1,
        prune_epochs=1, **change,
    )  # fmt: skip
    with pytest.raises(ValueError, match=match):
        deepc.run(cfg, base, epochs_scale=0.01, subset=64)
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())


def test_every_method_module_declares_the_protocol_the_zoo_uses():
    """Issue 29: the zoo relied on undeclared module attributes."""
    from lwt import recipes

    assert all(isinstance(m, recipes.Method) for m in recipes.METHODS.values())
    coded = {k for k, m in recipes.METHODS.items()
             if isinstance(m, recipes.CodedMethod)}  # fmt: skip
    deployed = {k for k, m in recipes.METHODS.items()
                if isinstance(m, recipes.DeployedMethod)}  # fmt: skip
    assert coded == {"deepc", "weightonly"} and deployed == {"combined"}


@pytest.fixture(scope="module")
def untrained_cct():
    from lwt import models

    torch.manual_seed(0)
    return models.create_model("cct4").eval()


def _quick(name, **changes):
    return dataclasses.replace(recipes.config(name), calibration=64, **changes)


def test_run_weightonly_ships_the_packed_file_it_returns(untrained_cct):
    import copy

    from lwt import oneshot
    from lwt.oneshot import GroupQuantized
    from lwt.recipes import weightonly
    from lwt.recipes._common import calibration_batches

    try:
        result = weightonly.run(_quick("cct-cifar-w4"), copy.deepcopy(untrained_cct))
    except FileNotFoundError:
        pytest.skip("CIFAR-10 not available")
    model = result.model
    assert sum(isinstance(m, GroupQuantized) for m in model.modules()) == 19
    blob = weightonly.to_bytes(model)
    assert len(blob) == result.schedule[0]["bytes"]
    decoded = recipes.build("cct-cifar-w4")
    decoded.load_state_dict(weightonly.from_bytes(blob))
    x = torch.randn(4, 3, 32, 32)
    batches = calibration_batches("cct4", 64, 0)
    in_memory = oneshot.quantize_weights(untrained_cct, batches, bits=4, group_size=64,
                                         method="gptq")  # fmt: skip
    with torch.no_grad():
        assert torch.allclose(decoded.eval()(x), model(x), atol=1e-5)
        # the file is the quantized model, up to its fp16 biases and norms
        assert (decoded(x) - in_memory(x)).abs().max() < 1e-3


def test_run_nmsparse_keeps_two_of_four_through_fine_tuning(untrained_cct):
    import copy

    from lwt.recipes import nmsparse

    cfg = _quick("cct-cifar-2of4", method="wanda", batch_size=64)
    try:
        result = nmsparse.run(cfg, copy.deepcopy(untrained_cct), epochs_scale=0.1,
                              subset=128)  # fmt: skip
    except FileNotFoundError:
        pytest.skip("CIFAR-10 not available")
    assert result.epochs == 1
    layers = {n: m for n, m in result.model.named_modules() if isinstance(m, nn.Linear)}
    for name, layer in layers.items():
        groups = (layer.weight != 0).reshape(layer.weight.shape[0], -1, 4).sum(-1)
        if name.startswith("blocks."):
            assert (groups <= 2).all(), name
        else:
            assert (groups == 4).all(), name
    model = recipes.build("cct-cifar-2of4")
    model.load_state_dict(result.model.state_dict())  # plain tensors, no masks left


def test_nmsparse_settings_are_checked_when_made():
    from lwt.recipes import nmsparse

    with pytest.raises(ValueError, match="amount"):
        nmsparse.Config("cct-cifar", "cct4", amount=0.5)  # n:m still set
    with pytest.raises(ValueError, match="method"):
        nmsparse.Config("cct-cifar", "cct4", method="obs")
    assert (
        nmsparse.Config("cct-cifar", "cct4", amount=0.5, n=None, m=None).amount == 0.5
    )


def test_adamw_finetune_resumes_its_own_run_only(untrained_cct, capsys):
    """A second call from the same start resumes the saved state (no epoch re-run,
    the same weights); another start does not pick that state up."""
    import copy

    from lwt.recipes import _common

    cfg = _quick("cct-cifar-heads", batch_size=64, epochs=2, alpha=0.0)
    first = copy.deepcopy(untrained_cct)
    try:
        epochs, row = _common.adamw_finetune(first, cfg, epochs_scale=1.0, subset=64,
                                             quiet=False)  # fmt: skip
    except FileNotFoundError:
        pytest.skip("CIFAR-10 not available")
    assert epochs == 2 and "resumed" not in capsys.readouterr().out
    again = copy.deepcopy(untrained_cct)
    _common.adamw_finetune(again, cfg, epochs_scale=1.0, subset=64, quiet=False)
    out = capsys.readouterr().out
    assert "resumed" in out and "epoch 1/2" not in out
    pairs = zip(first.state_dict().values(), again.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    other = copy.deepcopy(untrained_cct)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)  # another starting model
    _common.adamw_finetune(other, cfg, epochs_scale=1.0, subset=64, quiet=False)
    assert "resumed" not in capsys.readouterr().out


def test_adamw_finetune_distils_from_the_teacher_it_is_given(untrained_cct):
    """alpha > 0: the loss is Distiller's against the given teacher (recorded in the
    row), the teacher's weights do not move, and without a teacher it refuses."""
    import copy

    from lwt.recipes import _common

    cfg = _quick("cct-cifar-heads", batch_size=64, epochs=1, alpha=1.0, T=1.0)
    student = copy.deepcopy(untrained_cct)
    with pytest.raises(ValueError, match="teacher"):
        _common.adamw_finetune(student, cfg, epochs_scale=1.0, subset=64, quiet=True)
    teacher = copy.deepcopy(untrained_cct)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.01 * torch.randn_like(p))
    before = copy.deepcopy(teacher.state_dict())
    try:
        _, row = _common.adamw_finetune(student, cfg, epochs_scale=1.0, subset=64,
                                        quiet=True, teacher=teacher)  # fmt: skip
    except FileNotFoundError:
        pytest.skip("CIFAR-10 not available")
    assert row["distilled"] == {"teacher": "cct-cifar", "T": 1.0, "alpha": 1.0}
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert not torch.equal(student.state_dict()["fc.weight"],
                           untrained_cct.state_dict()["fc.weight"])  # fmt: skip
    assert set(student.state_dict()) == set(untrained_cct.state_dict())  # no prefix


def test_teacher_for_copies_the_base_before_compression(untrained_cct):
    """Both transformer methods take their teacher from teacher_for: None without
    distillation, else a copy in eval mode that later in-place changes do not reach."""
    import copy

    from lwt.recipes import _common

    base = copy.deepcopy(untrained_cct)
    assert _common.teacher_for(_quick("cct-cifar-2of4"), base) is None
    teacher = _common.teacher_for(_quick("cct-cifar-2of4", alpha=0.5), base)
    assert teacher is not base and not teacher.training
    with torch.no_grad():
        next(base.parameters()).zero_()
    assert not torch.equal(next(teacher.parameters()), next(base.parameters()))


def test_run_heads_removes_half_the_heads_and_rebuilds_from_arch(untrained_cct):
    import copy

    from lwt.recipes import heads

    cfg = _quick("cct-cifar-heads", batch_size=64)
    try:
        result = heads.run(cfg, copy.deepcopy(untrained_cct), epochs_scale=0.1,
                           subset=128)  # fmt: skip
    except FileNotFoundError:
        pytest.skip("CIFAR-10 not available")
    keep = result.arch["keep"]
    assert sum(len(k) for k in keep.values()) == 8 and all(keep.values())
    rebuilt = recipes.build("cct-cifar-heads", result.arch)
    rebuilt.load_state_dict(result.model.state_dict())
    assert [b.attn.heads for b in rebuilt.blocks] == [len(k) for k in keep.values()]


def test_equivariant_width_sweep_builds_both_networks_and_matches_macs():
    from lwt import transfer

    z36 = recipes.build("rotmnist-z2cnn-w36", {})
    p9 = recipes.build("rotmnist-p4cnn", {})
    assert isinstance(z36, models.Z2CNN) and isinstance(p9, transfer.P4CNN)
    macs = [measure.count_macs(m, (1, 28, 28)) for m in (z36, p9)]
    assert abs(macs[0] / macs[1] - 1) < 0.01  # the arithmetic control: equal MACs
    z20 = recipes.build("rotmnist-z2cnn-w20-s1", {})  # seed 1 of the shipped width
    plain = models.create_model("z2cnn")
    assert measure.count_params(z20) == measure.count_params(plain)
    assert recipes.config("rotmnist-z2cnn-w20-s1").seed == 1
    widths = {"z2": (10, 14, 20, 28, 36), "p4": (3, 4, 6, 9, 12)}
    for group, shipped in (("z2", 20), ("p4", 9)):
        for c in widths[group]:
            for s in (0, 1, 2):
                name = f"rotmnist-{group}cnn-w{c}" + (f"-s{s}" if s else "")
                if s == 0 and c == shipped:
                    name = f"rotmnist-{group}cnn"
                assert name in recipes.SHIPPED, name


def test_a_tuple_of_rates_is_tuned_on_the_validation_split_and_keeps_the_best():
    """One run per rate from the same seed; the kept model is the run with the best
    validation accuracy, and it is that run's weights (retrained alone at the chosen
    rate, it is bit-identical); the test set is never read to choose."""
    from dataclasses import replace

    cfg = replace(recipes.config("mlp800-scratch"), epochs=1, lr=(1e-4, 0.05),
                  validation=1000)  # fmt: skip
    try:
        tuned = recipes.scratch.run(cfg, None, subset=512)
    except FileNotFoundError:
        pytest.skip("MNIST not available")
    runs = tuned.schedule
    assert [r["lr"] for r in runs] == [1e-4, 0.05]
    assert all(0 <= r["validation_accuracy"] <= 1 for r in runs)
    chosen = [r for r in runs if r["chosen"]]
    assert len(chosen) == 1
    best = max(r["validation_accuracy"] for r in runs)
    assert chosen[0]["validation_accuracy"] == best
    assert chosen[0]["lr"] == 0.05  # 1e-4 for one epoch of 4 steps barely moves
    alone = recipes.scratch.run(replace(cfg, lr=0.05), None, subset=512)
    assert alone.schedule[0]["validation_accuracy"] == chosen[0]["validation_accuracy"]
    for (k, a), b in zip(tuned.model.state_dict().items(),
                         alone.model.state_dict().values(), strict=True):  # fmt: skip
        assert torch.equal(a, b), k


def test_several_rates_need_a_validation_split():
    from dataclasses import replace

    cfg = replace(recipes.config("mlp800-scratch"), validation=0)
    with pytest.raises(ValueError, match="validation"):
        recipes.scratch.run(cfg, None, subset=64)
    # checked before anything loads or trains, each naming the argument
    for bad in (-1, True, "5000", None):
        with pytest.raises(ValueError, match="validation must be an int"):
            recipes.scratch.run(replace(cfg, validation=bad), None, subset=64)
    for bad in ((), (0.1, 0.0), (0.1, float("nan")), (0.1, 0.1), [0.01, 0.1], -0.1):
        with pytest.raises(ValueError, match="lr must be"):
            recipes.scratch.run(replace(cfg, lr=bad, validation=100), None, subset=64)
    with pytest.raises(ValueError, match="one rate"):
        recipes.transformer.run(replace(recipes.config("cct-cifar"), validation=100),
                                None, subset=64)  # fmt: skip


def test_procedure_arms_differ_in_one_thing_each():
    """Issue 30: the 2 x 2 x 3 comparison of notebook 03 changes only the procedure,
    the loss and the seed; the ranks are resnet20-tucker's."""
    arms = {n: recipes.config(n) for n in recipes.SHIPPED
            if recipes.config(n).METHOD == "lowrank-procedure"}  # fmt: skip
    assert len(arms) == 12
    ref = arms["resnet20-tucker-lw-rec"]
    assert ref.ranks == recipes.config("resnet20-tucker").ranks and len(ref.ranks) == 18
    kinds = set()
    for cfg in arms.values():
        changed = {k for k, v in cfg.__dict__.items() if v != ref.__dict__[k]}
        assert changed <= {"procedure", "loss", "seed"}
        kinds.add((cfg.procedure, cfg.loss, cfg.seed))
    assert len(kinds) == 12


@pytest.mark.parametrize(
    "change, match",
    [({"procedure": "greedy"}, "procedure must be one of"),
     ({"loss": "kl"}, "loss must be one of"),
     ({"ranks": {}}, "ranks is empty"),
     ({"steps": 0}, "steps must be >= 1"),
     ({"lr": 0.0}, "lr must be > 0"),
     ({"ranks": {"layer9.conv1": [4, 4]}}, r"ranks names \['layer9.conv1'\]")],
)  # fmt: skip
def test_procedure_refuses_bad_settings_before_anything_changes(change, match):
    from lwt.recipes import procedure

    base = models.create_model("resnet20")
    before = copy.deepcopy(base.state_dict())
    cfg = dataclasses.replace(recipes.config("resnet20-tucker-lw-rec"), **change)
    with pytest.raises(ValueError, match=match):
        procedure.run(cfg, base)
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())


@pytest.mark.parametrize("procedure_", ["layerwise", "all_at_once"])
def test_procedure_run_records_a_held_out_curve(procedure_):
    from lwt.recipes import procedure

    ranks = {"layer1.0.conv1": [8, 8], "layer3.2.conv2": [44, 44]}
    cfg = dataclasses.replace(
        recipes.config("resnet20-tucker-lw-rec"),
        ranks=ranks, procedure=procedure_, loss="task", eval_images=64,
    )  # fmt: skip
    try:
        result = procedure.run(cfg, models.create_model("resnet20"), epochs_scale=0.1,
                               subset=128)  # fmt: skip
    except FileNotFoundError:
        pytest.skip("CIFAR-10 not available")
    curve = result.schedule[0]["curve"]
    assert [c["step"] for c in curve] == [2, 4]  # 20 steps x 0.1 per layer
    assert all(0.0 <= c["accuracy"] <= 1.0 for c in curve)
    for name in ranks:
        assert isinstance(result.model.get_submodule(name), nn.Sequential)
    assert result.arch == {"ranks": ranks} and not result.model.training
