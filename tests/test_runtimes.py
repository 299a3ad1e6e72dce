"""Precision and runtime paths: cpu_features on synthetic cpuinfo, the bf16 copy, and
the OpenVINO wrapper against ONNX Runtime on the same files."""

import pytest
import torch

from lwt import cpu, data, deploy, measure, models, quantization, zoo

AMX_CPU = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
bogomips\t: 4800.00
"""
LAPTOP = "processor : 0\nflags : fpu sse2 avx avx2 fma avx_vnni\n"
ARM = "processor : 0\nFeatures : fp asimd evtstrm aes pmull sha1 sha2 crc32\n"


def test_cpu_features_from_synthetic_cpuinfo():
    assert all(cpu.cpu_features(AMX_CPU).values())
    laptop = cpu.cpu_features(LAPTOP)
    assert laptop["AVX2"] and laptop["VNNI"]  # AVX-VNNI counts as VNNI
    assert not (laptop["AVX-512"] or laptop["AMX-BF16"] or laptop["AVX-512 BF16"])
    assert not any(cpu.cpu_features(ARM).values())
    unknown = cpu.cpu_features("no flags here")
    assert set(unknown) == set(cpu.FEATURES) and all(
        v is None for v in unknown.values()
    )
    assert "unknown" in cpu.describe_cpu(unknown)
    line = cpu.describe_cpu(laptop)
    assert line.startswith("CPU: AVX2, VNNI") and "no AVX-512" in line


def test_ledger_header_names_the_cpu():
    ledger = measure.Ledger((1, 28, 28), repeats=2, rounds=2)
    ledger.measure("lenet300", models.create_model("lenet300"))
    first = str(ledger).splitlines()[0]
    assert first == cpu.describe_cpu()


def test_bf16_copy_is_bf16_and_close_to_float32():
    torch.manual_seed(0)
    model = models.create_model("resnet20").eval()
    bf = quantization.to_bfloat16(model)
    assert all(p.dtype == torch.bfloat16 for p in bf.parameters())
    assert all(p.dtype == torch.float32 for p in model.parameters())  # left as it was
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        ref, out = model(x), bf(x)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert (out - ref).abs().max() < 0.05 * ref.abs().max() + 0.05
    with pytest.raises(TypeError):
        quantization.to_bfloat16("resnet20")


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    pytest.importorskip("openvino")
    try:
        model = zoo.load_pretrained("lenet5")
        test = data.load_dataset("mnist", False, subset=512, seed=0, download=False)
        calib = data.load_dataset("mnist", True, subset=256, seed=0, download=False)
    except FileNotFoundError:
        pytest.skip("MNIST or the lenet5 checkpoint not available")
    folder = tmp_path_factory.mktemp("ov")
    fp32 = deploy.export_onnx(model, (1, 28, 28), folder / "m.onnx")
    int8 = deploy.quantize_onnx(fp32, folder / "m8.onnx", data.BatchLoader(calib, 128))
    return model, fp32, int8, data.BatchLoader(test, 256)


def test_openvino_f32_matches_torch_and_reports_its_precision(onnx_files):
    model, fp32, _, _ = onnx_files
    ov = deploy.OvModel(fp32, precision="f32")
    assert ov.precision == "f32"
    assert "bf16" not in ov.runtime_precisions()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(ov(x), model(x), atol=1e-4)
    with pytest.raises(ValueError, match="precision"):
        deploy.OvModel(fp32, precision="int4")


def test_openvino_int8_agrees_with_onnx_runtime(onnx_files):
    _, _, int8, test = onnx_files
    ov, ort = deploy.OvModel(int8), deploy.OrtModel(int8)
    # notebook 02's int8 agreement bound (>= 99 % of test images), here between two
    # int8 engines running the same file
    assert deploy.top1_agreement(ov, ort, test) >= 0.99
    precisions = ov.runtime_precisions()
    assert precisions.get("u8", 0) + precisions.get("i8", 0) > 0  # integer kernels ran
