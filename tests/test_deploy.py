import pytest
import torch

from lwt import deploy, measure, models, quantization

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    torch.manual_seed(0)
    model = models.create_model("lenet5").eval()
    calib = [torch.randn(32, 1, 28, 28) for _ in range(4)]
    d = tmp_path_factory.mktemp("onnx")
    fp32 = deploy.export_onnx(model, (1, 28, 28), d / "fp32.onnx")
    int8 = deploy.quantize_onnx(fp32, d / "int8.onnx", calib)
    return model, calib, fp32, int8


def test_fp32_export_matches_torch(lenet):
    model, calib, fp32, _ = lenet
    run = deploy.OrtModel(fp32)
    for batch in (1, 7):  # dynamic batch dimension
        x = torch.randn(batch, 1, 28, 28)
        assert torch.allclose(run(x), model(x), atol=1e-4)


def test_int8_file_is_smaller_and_runs_integer_kernels(lenet):
    model, calib, fp32, int8 = lenet
    assert len(measure.state_dict_bytes(model)) / int8.stat().st_size > 3.3
    ops = deploy.op_counts(int8, optimized=True)
    assert ops.get("QLinearConv", 0) == 2 and "Conv" not in ops
    stored = deploy.op_counts(int8)
    assert stored["QuantizeLinear"] >= 1 and stored["DequantizeLinear"] >= 4


def test_int8_agrees_with_fake_quant_model(lenet):
    model, calib, _, int8 = lenet
    # the file's weights are on lwt's portable 7-bit grid (deploy.quantize_onnx)
    qm = quantization.quantize_model(model, weight_bits=7)
    qm = quantization.calibrate(qm, calib)
    run = deploy.OrtModel(int8)
    x = torch.cat(calib)
    assert deploy.top1_agreement(run, qm, [x]) >= 0.9
    err = (run(x) - qm(x)).abs().max() / qm(x).abs().max()
    assert err < 0.1


def test_bad_inputs(lenet, tmp_path):
    _, calib, fp32, _ = lenet
    with pytest.raises(ValueError, match="method"):
        deploy.quantize_onnx(fp32, tmp_path / "x.onnx", calib, method="nope")
    with pytest.raises(ValueError, match="empty"):
        deploy.top1_agreement(lambda x: x, lambda x: x, [])


def test_profile_names_every_integer_kernel_with_its_shapes(
    lenet, tmp_path, monkeypatch
):
    _, _, _, int8 = lenet
    monkeypatch.chdir(tmp_path)
    rows = deploy.profile_onnx(int8, torch.randn(8, 1, 28, 28), runs=2)
    convs = [r for r in rows if r["op"] == "QLinearConv"]
    assert len(convs) == 2  # the same kernels op_counts(optimized=True) lists
    assert all(r["ms"] > 0 for r in rows)
    assert [r["ms"] for r in rows] == sorted((r["ms"] for r in rows), reverse=True)
    assert all(r["output"][0] == 8 for r in convs)  # batch first, as given
    assert not list(tmp_path.iterdir())  # no trace file left behind
    with pytest.raises(ValueError, match="runs"):
        deploy.profile_onnx(int8, torch.randn(1, 1, 28, 28), runs=0)
