import pytest
import torch

from lwt import integer, measure, models, pipelines, pruning, zoo


def test_ramp_is_cubic_and_ends_at_final():
    steps = pipelines.ramp({"fc1": 0.9}, 4)
    assert [s["fc1"] for s in steps] == pytest.approx(
        [0.9 * (1 - (1 - k / 4) ** 3) for k in range(1, 5)]
    )
    assert steps[-1] == {"fc1": pytest.approx(0.9)}


def test_build_matches_shapes():
    filt = pipelines.build("resnet20-filters")
    widths = [filt.get_submodule(f"layer{i}.0").conv1.out_channels for i in (1, 2, 3)]
    assert widths == [8, 16, 40]  # 60 % of 16/32/64 kept, rounded to multiples of 8
    assert measure.count_macs(filt, (3, 32, 32)) < measure.count_macs(
        models.create_model("resnet20"), (3, 32, 32)
    )
    assert isinstance(pipelines.build("lenet5-pruned"), models.LeNet5)


def test_recipe_and_names():
    assert pipelines.recipe("lenet300-pruned")["base"] == "lenet300"
    assert set(pipelines.PIPELINES) <= set(zoo.names())
    assert zoo.base_of("resnet20-filters") == "resnet20"
    with pytest.raises(ValueError, match="unknown"):
        pipelines.build("lenet300-quantized")
    with pytest.raises(ValueError, match="unknown"):
        zoo.base_of("nope")


def test_run_iterative_reaches_final_sparsities_quickly():
    try:
        base = zoo.load_pretrained("lenet300")
        model = pipelines.run("lenet300-pruned", base, epochs_scale=0.01, subset=256)
    except FileNotFoundError:
        pytest.skip("MNIST or the lenet300 checkpoint not available")
    final = pipelines.PIPELINES["lenet300-pruned"].final
    kept = {r["layer"]: r["kept"] for r in pruning.sparsity_report(model)}
    for layer, s in final.items():
        assert kept[layer] == pytest.approx(1 - s, abs=1e-4)
    assert not any(n.endswith("_orig") for n, _ in model.named_parameters())


def test_run_filters_gives_a_smaller_dense_model():
    try:
        model = pipelines.run(
            "resnet20-filters",
            models.create_model("resnet20"),
            epochs_scale=0.1,
            subset=128,
        )
    except FileNotFoundError:
        pytest.skip("CIFAR-10 not available")
    ref = pipelines.build("resnet20-filters")
    for (n, a), (_, b) in zip(
        model.state_dict().items(), ref.state_dict().items(), strict=True
    ):
        assert a.shape == b.shape, n
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_run_qat_gives_a_loadable_quantized_model():
    try:
        model = pipelines.run(
            "resnet20-qat4",
            models.create_model("resnet20"),
            epochs_scale=0.1,
            subset=256,
        )
    except FileNotFoundError:
        pytest.skip("CIFAR-10 not available")
    ref = pipelines.build("resnet20-qat4")
    ref.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(ref(x), model(x))
    w, fq = integer.quantized_weight(ref.get_submodule("layer1.0.conv1"))
    assert fq.bits == 4 and w.abs().max() <= 7
