"""Combining (notebook 07): the pipeline's stages compose, the deployed file matches
the torch model it came from, short names change nothing, Pareto fronts, and the
shipped ``resnet20-combined`` meets issue 13's targets."""

import shutil

import pytest
import torch
from torch import nn

from lwt import combine, data, deploy, measure, models, quantization, stats, train, zoo
from lwt.pareto import pareto_front
from lwt.recipes import combined
from lwt.saturation import saturation_report

pytest.importorskip("onnxruntime")


# ------------------------------------------------------------------ Pareto fronts
def test_pareto_front_known_answers():
    #            0    1    2    3    4    5
    costs = [10.0, 5.0, 20.0, 5.0, 30.0, 1.0]
    scores = [0.9, 0.8, 0.95, 0.85, 0.95, 0.1]
    # 5 (cheapest) -> 3 (beats 1 at equal cost) -> 0 -> 2; 4 ties 2 at higher cost
    assert pareto_front(costs, scores) == [5, 3, 0, 2]
    assert pareto_front([], []) == []
    assert pareto_front([1.0], [0.5]) == [0]
    assert pareto_front([1.0, 1.0], [0.5, 0.5]) == [0]  # exact duplicate: first kept
    assert pareto_front([1.0, 2.0, 3.0], [0.9, 0.8, 0.7]) == [0]


def test_pareto_front_brute_force():
    g = torch.Generator().manual_seed(0)
    costs = torch.randint(0, 6, (40,), generator=g).tolist()
    scores = torch.randint(0, 6, (40,), generator=g).tolist()
    front = set(pareto_front(costs, scores))
    for i in range(40):
        dominated = any(
            costs[j] <= costs[i]
            and scores[j] >= scores[i]
            and (costs[j], scores[j]) != (costs[i], scores[i])
            for j in range(40)
        )
        duplicate_first = all(
            (costs[j], scores[j]) != (costs[i], scores[i]) for j in range(i)
        )
        assert (i in front) == (not dominated and duplicate_first)


def test_pareto_front_bad_input():
    with pytest.raises(ValueError, match="length"):
        pareto_front([1.0, 2.0], [0.5])


# ------------------------------------------------------------------ the pipeline
def _batches(n=4, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(size, 3, 32, 32, generator=g),
            torch.randint(0, 10, (size,), generator=g),
        )
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A thin ResNet-14 through every stage, then deployed."""
    train.set_seed(0)
    model = models.create_model("resnet14w8").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = _batches()
    seen = []
    q = combine.compress(
        model, batches, amount=0.5, drop=["layer1.1"], epochs=1, qat_epochs=1,
        on_stage=lambda stage, m: seen.append((stage, type(m).__name__)),
    )  # fmt: skip
    path = combine.deploy_int8(
        q, (3, 32, 32), tmp_path_factory.mktemp("c") / "m.onnx", batches
    )
    return model, before, q, path, seen


def test_stages_compose_in_order_and_leave_the_model_alone(tiny):
    model, before, q, _, seen = tiny
    assert [s for s, _ in seen] == ["pruned", "distilled", "quantized"]
    assert seen[-1][1] == "GraphModule"
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    fq = [m for m in q.modules() if isinstance(m, quantization.FakeQuant)]
    # weights on the portable 7-bit grid (deploy.quantize_onnx), activations 8 bits
    assert fq and all(m.bits == (7 if m.dynamic else 8) for m in fq)
    # half of every block's inner filters gone (8 stays 8: a multiple of 8)
    assert measure.count_params(q) < 0.7 * measure.count_params(model)
    # layer1.1 dropped: no fake-quantized conv left under that name
    assert not any(n.startswith("layer1.1.") for n, _ in q.named_modules())
    assert any(n.startswith("layer1.0.") for n, _ in q.named_modules())


def test_to_float_bakes_weights_onto_their_grid(tiny):
    _, _, q, _, _ = tiny
    f = quantization.to_float(q)
    assert not any(hasattr(m, "parametrizations") for m in f.modules())
    x = torch.randn(8, 3, 32, 32)
    quantization.set_mode(
        q, observe=False, quantize=False
    )  # weights still fake-quantized
    try:
        assert torch.allclose(f(x), q(x), atol=1e-5)
    finally:
        quantization.set_mode(q, observe=False, quantize=True)
    for name, m in f.named_modules():
        if isinstance(m, nn.Conv2d):
            w = m.weight.detach().flatten(1)
            scale = w.abs().amax(1, keepdim=True) / 63  # 7-bit grid
            codes = w / scale.clamp_min(1e-12)
            assert torch.allclose(codes, codes.round(), atol=1e-3), name
    with pytest.raises(TypeError, match="FakeQuant"):
        quantization.to_float(models.create_model("lenet5"))


def test_deployed_file_agrees_with_the_torch_model(tiny):
    _, _, q, path, _ = tiny
    run = deploy.OrtModel(path)
    ops = deploy.op_counts(path, optimized=True)
    assert ops.get("QLinearConv", 0) >= 10 and "Conv" not in ops
    x = torch.cat([b[0] for b in _batches(seed=1)])
    with torch.no_grad():
        ref, got = q(x), run(x)
    # same integer weights; ranges recalibrated by ONNX Runtime on the same batches
    err = (got - ref).abs().max() / ref.abs().max()
    assert err < 0.1


def test_deployed_file_keeps_the_qat_integers_and_cannot_saturate(tiny):
    """The file's int8 weights are the QAT model's 7-bit integers, exactly; so no
    16-bit pair sum can saturate on a CPU without VNNI (lwt.saturation)."""
    import onnx
    from onnx import numpy_helper

    _, _, q, path, _ = tiny
    stored = sorted(
        (numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer
         if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2),
        key=lambda a: (a.shape, a.tobytes()),
    )  # fmt: skip
    trained = []
    for m in q.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fq = m.parametrizations.weight[0]
            w = m.parametrizations.weight.original.detach()
            fq._refresh(w)
            trained.append(quantization.quantize(
                w, fq.scale, fq.zero_point, 7, symmetric=True, axis=0
            ).numpy().astype("int8"))  # fmt: skip
    trained.sort(key=lambda a: (a.shape, a.tobytes()))
    assert len(stored) == len(trained)
    assert all((a == b).all() for a, b in zip(stored, trained, strict=True))
    assert max(int(abs(a).max()) for a in stored) == 63
    x = torch.cat([b[0] for b in _batches(seed=1)])
    rows = saturation_report(path, [x])
    assert rows and all(r["saturating"] == 0 for r in rows)
    assert all(r["max_pair"] <= 2 * 255 * 63 for r in rows)


def test_shorten_names_changes_nothing_but_the_names(tmp_path, tiny):
    _, _, _, path, _ = tiny
    import onnx

    long = tmp_path / "long.onnx"
    model = onnx.load(str(path))
    for t in model.graph.initializer:  # give the tensors long names back
        old = t.name
        t.name = "very.long.module.path." + old
        for node in model.graph.node:
            node.input[:] = [t.name if n == old else n for n in node.input]
    onnx.save(model, str(long))
    short = tmp_path / "short.onnx"
    shutil.copy(long, short)
    deploy.shorten_names(short)
    assert short.stat().st_size < long.stat().st_size
    g = onnx.load(str(short)).graph
    assert [v.name for v in g.input] == ["input"] and [v.name for v in g.output] == [
        "logits"
    ]
    assert max(len(t.name) for t in g.initializer) <= 4
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(deploy.OrtModel(long)(x), deploy.OrtModel(short)(x))


def test_bad_settings_raise_and_leave_the_model_alone():
    model = models.create_model("resnet14w8")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="epochs"):
        combine.compress(model, _batches(1), epochs=-1)
    with pytest.raises(ValueError, match="calibration_batches"):
        combine.compress(model, _batches(1), calibration_batches=0)
    with pytest.raises(ValueError, match="amount"):
        combine.compress(model, _batches(1), amount=1.5, epochs=0, qat_epochs=0)
    with pytest.raises(ValueError, match="drop"):
        combine.compress(model, _batches(1), drop=["layer2.0"], epochs=0, qat_epochs=0)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_compress_and_deploy_measures_a_ledger(tmp_path):
    train.set_seed(0)
    model = models.create_model("resnet14w8").eval()
    out = combine.compress_and_deploy(
        model, _batches(2), _batches(1, seed=2), (3, 32, 32), tmp_path / "m.onnx",
        amount=0.5, epochs=0, qat_epochs=0, repeats=2, warmup=1,
    )  # fmt: skip
    assert out.stages == ["pruned", "distilled", "quantized"]
    names = [r.name for r in out.ledger.rows]
    assert names == ["dense fp32 (torch)", "QAT int8 (torch, fake-quant)",
                     "deployed int8 (ONNX Runtime)"]  # fmt: skip
    assert out.ledger.rows[-1].file_bytes == out.onnx.stat().st_size


# ------------------------------------------------------------------ shipped model
def _ci_data():
    try:
        return data.load_dataset("cifar10", False, download=False)
    except FileNotFoundError:
        pytest.skip("dataset not available (set LWT_DATA_DIR)")


def test_resnet20_combined_meets_the_targets():
    """Issue 13's targets, judged by issue 28's rule: the file >= 8x smaller than the
    fp32 torch.save, and <= 1.5 pt below the dense fp32 ResNet-20 on the full test set
    — reached, or missed by less than the measurement's uncertainty (the paired 95 %
    interval of the loss reaches 1.5 pt); the deployed file scores its manifest
    accuracy here and agrees with the torch fake-quant model (notebook 02's bound).
    The 7-bit file retrained with 30 distillation epochs (2026-12-05) is 1.25 pt
    below; its top-1 agreement with the torch model is measured on the full test set
    (on a 1,000-image subset it reads 98.7 %, on all 10,000 99.5 %)."""
    manifest = zoo.read_manifest()
    entry, dense = manifest["resnet20-combined"], manifest["resnet20"]
    deployed = entry["deployed"]
    path = zoo.deployed_path("resnet20-combined")
    assert path.stat().st_size == deployed["bytes"]
    assert dense["bytes"] / deployed["bytes"] >= 8
    test = data.BatchLoader(_ci_data(), 500)
    run = deploy.OrtModel(path)
    mask = stats.correct_mask(run, test)
    acc = mask.float().mean().item()
    assert acc == pytest.approx(deployed["test_accuracy"], abs=1e-4)
    dense_mask = stats.correct_mask(zoo.load_pretrained("resnet20"), test)
    loss, low, _ = stats.paired_difference(dense_mask, mask)
    assert loss == pytest.approx(dense["test_accuracy"] - deployed["test_accuracy"],
                                 abs=1e-4)  # fmt: skip
    assert low <= 0.015, f"loss {loss:.4f}: the target is missed beyond noise"
    agree = deploy.top1_agreement(run, zoo.load_pretrained("resnet20-combined"), test)
    assert agree >= 0.99


def test_deployed_path_is_checked(tmp_path):
    shutil.copytree(zoo.checkpoint_dir(), tmp_path / "ck")
    assert zoo.deployed_path("resnet20-combined", tmp_path / "ck").exists()
    with pytest.raises(ValueError, match="no deployed file"):
        zoo.deployed_path("resnet20", tmp_path / "ck")
    f = tmp_path / "ck" / "resnet20-combined.onnx"
    f.write_bytes(f.read_bytes()[:-1] + b"\0")
    with pytest.raises(ValueError, match="sha256"):
        zoo.deployed_path("resnet20-combined", tmp_path / "ck")


def test_build_uses_the_weight_grid_the_checkpoint_was_trained_on():
    from lwt import recipes

    cfg = recipes.config("resnet20-combined")
    arch = {k: v for k, v in zoo.read_manifest()["resnet20-combined"]["arch"].items()
            if k != "weight_bits"}  # fmt: skip

    def weight_bits(m):
        return {q.bits for q in m.modules()
                if isinstance(q, quantization.FakeQuant) and q.dynamic}  # fmt: skip

    assert weight_bits(combined.build(cfg, arch)) == {8}  # entries older than the field
    for bits in (7, 8):
        assert weight_bits(combined.build(cfg, {**arch, "weight_bits": bits})) == {bits}


@pytest.mark.parametrize("arch", ["lenet5", "mobilenet", "resnet20"])
def test_activation_ranges_match_every_quantizer_to_its_tensor(arch, tmp_path):
    """Issue 29: ranges were paired with ONNX tensors by order and count with
    ResNet-specific rules (on a LeNet-5 none matched, silently). Now every quantizer
    is matched by the values its tensor carries, and the file uses its grid."""
    import onnx
    from onnx import numpy_helper

    torch.manual_seed(0)
    model = models.create_model(arch).eval()
    shape = models.input_shape_of(arch)
    batches = [torch.randn(16, *shape) for _ in range(2)]
    q = quantization.quantize_model(model, weight_bits=7)
    q = quantization.calibrate(q, batches)
    fp32 = deploy.export_onnx(quantization.to_float(q), shape, tmp_path / "f.onnx")
    ranges = combine.activation_ranges(q, fp32)
    assert len(ranges) == len(quantization.activation_quantizers(q))
    int8 = deploy.quantize_onnx(fp32, tmp_path / "q.onnx", batches, ranges=ranges)
    g = onnx.load(str(int8)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    scales = {n.input[0]: float(inits[n.input[1]]) for n in g.node
              if n.op_type == "QuantizeLinear" and n.input[1] in inits}  # fmt: skip
    made_by = {o: n.op_type for n in onnx.load(str(fp32)).graph.node for o in n.output}
    outputs = {o.name for o in g.output}
    # ONNX Runtime leaves the pooling (ReduceMean) and the graph's output in float
    left = {t for t in ranges if t not in scales}
    assert all(made_by.get(t) == "ReduceMean" or t in outputs for t in left), left
    assert len(left) <= 2
    assert all(scales[t] == pytest.approx(ranges[t][0]) for t in ranges if t in scales)
