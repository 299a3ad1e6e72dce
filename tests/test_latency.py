"""The latency lookup table: conv rows matched by execution order, a cut predicted."""

import pytest
import torch
from torch import nn

from lwt import latency


def rows():
    return [
        {"op": "QuantizeLinear", "ms": 0.1, "order": 0},
        {"op": "QLinearConv", "ms": 2.0, "order": 1},
        {"op": "QLinearConv", "ms": 1.0, "order": 2},
        {"op": "QLinearAdd", "ms": 0.3, "order": 3},
        {"op": "QLinearConv", "ms": 0.5, "order": 4},
    ]


def test_table_matches_convs_by_execution_order_whatever_the_listing():
    names = ["conv1", "layer1.0.conv1", "layer1.0.conv2"]
    want = {"conv1": 2.0, "layer1.0.conv1": 1.0, "layer1.0.conv2": 0.5}
    table = latency.conv_latency_table(sorted(rows(), key=lambda r: r["ms"]), names)
    assert {k: table[k] for k in names} == want
    assert table["other"] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="3 convolutions"):
        latency.conv_latency_table(rows(), names[:2])


def test_predict_scales_inner_convs_only_and_checks_its_keep():
    table = {"conv1": 2.0, "layer1.0.conv1": 1.0, "layer1.0.conv2": 0.5,
             "layer2.0.conv1": 0.4, "layer2.0.conv2": 0.4,
             "layer2.0.downsample.0": 0.2, "other": 0.4}  # fmt: skip
    assert latency.predict_ms(table, {}) == pytest.approx(4.9)
    assert latency.predict_ms(table, {"layer1.0": 0.0}) == pytest.approx(3.4)
    assert latency.predict_ms(table, {"layer2.0": 0.5}) == pytest.approx(4.5)
    with pytest.raises(ValueError, match="not a block"):
        latency.predict_ms(table, {"layer9.0": 0.5})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        latency.predict_ms(table, {"layer1.0": 1.5})


def test_a_real_profile_gives_one_entry_per_conv(tmp_path):
    import contextlib
    import io

    from lwt import deploy

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3)).eval()
    with contextlib.redirect_stdout(io.StringIO()):
        fp32 = deploy.export_onnx(model, (3, 16, 16), tmp_path / "m.onnx")
        int8 = deploy.quantize_onnx(
            fp32, tmp_path / "q.onnx", [torch.randn(4, 3, 16, 16)]
        )
    profile = deploy.profile_onnx(int8, torch.randn(2, 3, 16, 16), runs=2)
    assert sorted(r["order"] for r in profile) == list(range(len(profile)))
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    table = latency.conv_latency_table(profile, convs)
    assert set(table) == {"0", "2", "other"}
    assert sum(table.values()) == pytest.approx(sum(r["ms"] for r in profile))
