"""Int8 files that compute the same on every CPU (issue 27): lwt's 7-bit weight grid,
the saturation report, ONNX Runtime's precise option."""

import numpy as np
import pytest
import torch

from lwt import cpu, data, deploy, zoo
from lwt.saturation import PAIR_LIMIT, saturation_report

pytest.importorskip("onnxruntime")


def _int8_weights(path):
    import onnx
    from onnx import numpy_helper

    return [
        numpy_helper.to_array(t)
        for t in onnx.load(str(path)).graph.initializer
        if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2  # not zero points
    ]


def test_default_grid_is_seven_bits_and_eight_is_onnx_runtimes(lenet_int8_files):
    _, files = lenet_int8_files
    w7, w8 = _int8_weights(files[7]), _int8_weights(files[8])
    assert len(w7) == len(w8) == 4  # two convs, two linears
    assert max(int(np.abs(w).max()) for w in w7) == 63
    assert min(int(w.min()) for w in w7) >= -63
    assert max(int(np.abs(w).max()) for w in w8) == 127


def test_report_pairs_by_hand(tmp_path):
    """One linear layer with known codes: the pairs and the saturated count."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.array([[127, 127, -5, 3], [1, 1, 1, 1]], np.int8)  # [out, in] (transB)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w", "ws"], ["wd"]),
        helper.make_node("Gemm", ["xd", "wd"], ["y"], transB=1),
    ]
    inits = [
        numpy_helper.from_array(np.array(1.0, np.float32), "s"),
        numpy_helper.from_array(np.array(0, np.uint8), "z"),
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.array(1.0, np.float32), "ws"),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, tmp_path / "g.onnx")
    x = torch.tensor([[255.0, 255.0, 10.0, 20.0], [100.0, 50.0, 255.0, 255.0]])
    (row,) = saturation_report(tmp_path / "g.onnx", [x])
    # row 0: 255*127 + 255*127 = 64,770 (saturates), -50 + 60 = 10;
    # row 1: 100*127 + 50*127 = 19,050; 255*-5 + 255*3 = -510; the ones row: small
    assert row["max_pair"] == 64_770
    assert row["saturating"] == 1
    assert row["pairs"] == 2 * 2 * 2  # images x outputs x pairs
    assert row["weights"] == (-5, 127)


def test_naive_eight_bit_file_saturates_and_lwts_does_not(lenet_int8_files):
    calib, files = lenet_int8_files
    r8 = saturation_report(files[8], calib)
    r7 = saturation_report(files[7], calib)
    assert [r["op"] for r in r7] == ["Conv", "Conv", "Gemm", "Gemm"]
    assert sum(r["saturating"] for r in r8) > 0
    assert max(r["max_pair"] for r in r8) > PAIR_LIMIT
    assert all(r["saturating"] == 0 for r in r7)
    assert max(r["max_pair"] for r in r7) <= 2 * 255 * 63
    assert [r["pairs"] for r in r7] == [r["pairs"] for r in r8]
    # max_images stops early; the pair count is per image
    one = saturation_report(files[7], calib, max_images=1)
    assert one[0]["pairs"] * 128 == r7[0]["pairs"]
    with pytest.raises(ValueError, match="max_images"):
        saturation_report(files[7], calib, max_images=0)
    with pytest.raises(ValueError, match="empty"):
        saturation_report(files[7], [])


def test_report_agrees_with_the_avx2_accuracy_table():
    """Issue 27's table (dense ResNet-20, AVX2-only EPYC): ONNX Runtime's 8-bit
    weights lost 0.7 pt there, 7-bit weights 0.03 pt. The report, on a VNNI machine
    or any other, finds many saturating pairs in the first and none in the second."""
    model = zoo.load_pretrained("resnet20")
    tr = data.load_dataset("cifar10", True, subset=256, seed=0, download=False)
    te = data.load_dataset("cifar10", False, subset=32, seed=0, download=False)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        fp32 = deploy.export_onnx(model, (3, 32, 32), Path(tmp) / "fp32.onnx")
        rows = {
            b: saturation_report(
                deploy.quantize_onnx(
                    fp32, Path(tmp) / f"{b}.onnx", data.BatchLoader(tr, 128),
                    weight_bits=b,
                ),
                data.BatchLoader(te, 32),
            )
            for b in (7, 8)
        }  # fmt: skip
    assert sum(r["saturating"] for r in rows[8]) > 10_000
    assert rows[8][0]["saturating"] > 0  # the stem: raw image codes x 27 weights
    assert all(r["saturating"] == 0 for r in rows[7])


def test_shipped_deployed_files_cannot_saturate():
    manifest = zoo.read_manifest()
    shipped = [n for n, e in manifest.items() if "deployed" in e]
    assert shipped
    te = data.load_dataset("cifar10", False, subset=64, seed=0, download=False)
    for name in shipped:
        path = zoo.deployed_path(name)
        assert max(int(np.abs(w).max()) for w in _int8_weights(path)) <= 63
        rows = saturation_report(path, data.BatchLoader(te, 64))
        assert all(r["saturating"] == 0 for r in rows), name


def test_lwt_sessions_set_the_precise_option(lenet_int8_files):
    _, files = lenet_int8_files
    key = "session.x64quantprecision"
    on = deploy.session(files[8], precise=True).get_session_options()
    off = deploy.session(files[8], precise=False).get_session_options()
    assert on.get_session_config_entry(key) == "1"
    auto = deploy.session(files[8]).get_session_options()
    if cpu.cpu_features().get("VNNI") is True:  # None: set unless the CPU has VNNI
        with pytest.raises(RuntimeError, match=key):
            auto.get_session_config_entry(key)
    else:
        assert auto.get_session_config_entry(key) == "1"
    with pytest.raises(RuntimeError, match=key):  # ONNX Runtime's default: unset
        off.get_session_config_entry(key)
    assert deploy.OrtModel(files[7], precise=True).session.get_session_options(
    ).get_session_config_entry(key) == "1"  # fmt: skip


def test_bad_weight_bits_are_refused(lenet_int8_files, tmp_path):
    calib, _ = lenet_int8_files
    fp32 = tmp_path / "missing.onnx"
    for bad in (4, 16, True, "7"):
        with pytest.raises(ValueError, match="weight_bits"):
            deploy.quantize_onnx(fp32, tmp_path / "x.onnx", calib, weight_bits=bad)
    assert not (tmp_path / "x.onnx").exists()
