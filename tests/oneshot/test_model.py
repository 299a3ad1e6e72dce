"""lwt.oneshot.model and .packed: whole-model weight quantization and one-shot pruning,
and the packed file (real bytes, exact round trip, corrupt files refused)."""

import copy

import pytest
import torch
from torch import nn

from lwt.oneshot import groupwise, model, packed
from lwt.oneshot.quantized import GroupQuantized


class Small(nn.Module):
    """A conv (8·3·3 = 72 inputs per filter) and two linears."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 16, 3, padding=1)
        self.fc1 = nn.Linear(64, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = torch.relu(self.conv(x)).mean((2, 3))  # (N, 16)
        x = x.repeat(1, 4)  # (N, 64)
        return self.fc2(torch.relu(self.fc1(x)))


def small(seed=0):
    torch.manual_seed(seed)
    return Small().eval()


def batches(seed=1, n=4):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(32, 8, 6, 6, generator=g) for _ in range(n)]


def output_error(a, b, xs):
    with torch.no_grad():
        return sum(float((a(x) - b(x)).pow(2).mean()) for x in xs)


def test_rtn_layers_hold_the_codes_of_groupwise_rtn_and_the_model_is_a_copy():
    m = small()
    before = copy.deepcopy(m.state_dict())
    q = model.quantize_weights(m, bits=4, group_size=8)
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())
    for name in ("conv", "fc1", "fc2"):
        layer, ql = m.get_submodule(name), q.get_submodule(name)
        assert isinstance(ql, GroupQuantized)
        w = layer.weight.detach().reshape(layer.weight.shape[0], -1)
        _, codes, scale, zero = groupwise.rtn(w, 4, 8)
        assert torch.equal(ql.codes.long(), codes)
        want = groupwise.dequantize_groups(codes, scale.half().float(), zero, 8)
        assert torch.equal(ql.dequantized(), want.reshape(layer.weight.shape))
    x = batches()[0]
    with torch.no_grad():
        assert (q(x) - m(x)).abs().max() < 0.1 * m(x).abs().max()


def test_default_layers_are_those_the_group_divides():
    q = model.quantize_weights(small(), bits=4, group_size=64)  # conv has 72 inputs
    assert isinstance(q.conv, nn.Conv2d) and isinstance(q.fc1, GroupQuantized)


def test_gptq_and_awq_whole_model_beat_rtn_on_calibration_data():
    m, xs = small(), batches()
    errors = {
        method: output_error(
            m, model.quantize_weights(m, xs, bits=3, group_size=16, method=method), xs
        )
        for method in ("rtn", "gptq", "awq")
    }
    assert errors["gptq"] < errors["rtn"] and errors["awq"] <= errors["rtn"] * 1.01


def test_packed_file_round_trips_exactly_and_counts_real_bytes(tmp_path):
    m, xs = small(), batches()
    q = model.quantize_weights(m, xs, bits=4, group_size=8, method="awq")
    path = tmp_path / "m.lwtq"
    size = packed.save_packed(q, path, half=False)
    assert size == path.stat().st_size
    loaded = packed.load_packed(path, m)
    with torch.no_grad():
        assert torch.equal(loaded(xs[0]), q(xs[0]))
    decoded = copy.deepcopy(m)
    decoded.load_state_dict(packed.packed_state_dict(path.read_bytes()))
    with torch.no_grad():  # the float model the file decodes to computes the same
        assert torch.allclose(decoded(xs[0]), q(xs[0]), atol=1e-6)
    assert packed.save_packed(loaded, tmp_path / "again", half=False) == size
    assert (tmp_path / "again").read_bytes() == path.read_bytes()
    layer_bytes = sum(
        groupwise.packed_bytes(*ql.codes.shape, 4, 8)
        + (0 if ql.in_scale is None else 2 * ql.in_scale.numel())
        for ql in (q.conv, q.fc1, q.fc2)
    )
    biases = 4 * sum(layer.bias.numel() for layer in (m.conv, m.fc1, m.fc2))
    header = size - layer_bytes - biases
    assert 0 < header < 2000  # magic, version, length and the JSON header


def test_four_bit_file_is_over_six_times_smaller_than_fp32_torch_save(tmp_path):
    torch.manual_seed(0)
    m = nn.Sequential(*[nn.Linear(256, 256) for _ in range(4)])
    torch.save(m.state_dict(), tmp_path / "fp32.pt")
    size = packed.save_packed(
        model.quantize_weights(m, bits=4, group_size=64), tmp_path / "w4"
    )
    assert (tmp_path / "fp32.pt").stat().st_size / size > 6.5


def test_corrupt_or_mismatched_files_are_refused_before_loading(tmp_path):
    m = small()
    path = tmp_path / "m.lwtq"
    packed.save_packed(model.quantize_weights(m, bits=4, group_size=8), path)
    raw = path.read_bytes()
    cases = {
        "bad magic": b"XXXX" + raw[4:],
        "truncated": raw[: len(raw) - 10],
        "header longer than the file": raw[:5]
        + (2**31).to_bytes(4, "little")
        + raw[9:],
        "not json": raw[:9] + b"\xff" * (len(raw) - 9),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError):
            packed.load_packed(tmp_path / name, m)
    other = nn.Sequential(nn.Linear(64, 128))
    before = copy.deepcopy(other.state_dict())
    with pytest.raises(ValueError, match="conv"):
        packed.load_packed(path, other)
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in before.items())


def test_two_of_four_oneshot_keeps_two_in_every_four_and_sparsegpt_errs_least():
    m, xs = small(), batches()
    errors = {}
    for method in model.PRUNE_METHODS:
        p = model.prune_oneshot(m, xs, method=method, n=2, m=4, layers=["fc1", "fc2"])
        for name in ("fc1", "fc2"):
            w = p.get_submodule(name).weight
            assert ((w != 0).reshape(w.shape[0], -1, 4).sum(-1) <= 2).all()
        errors[method] = output_error(m, p, xs)
    assert errors["sparsegpt"] < errors["wanda"] <= errors["magnitude"] * 1.05
    assert (m.fc1.weight != 0).all()  # the original is untouched


def test_bad_arguments_are_refused_with_the_model_untouched():
    m = small()
    before = copy.deepcopy(m.state_dict())
    bad = [
        dict(bits=4, group_size=8, method="int4"),
        dict(bits=9, group_size=8),
        dict(bits=4, group_size=7, layers=["fc1"]),
        dict(bits=4, group_size=8, layers=["nope"]),
        dict(bits=4, group_size=8, method="gptq"),  # no batches
    ]
    for kwargs in bad:
        with pytest.raises(ValueError):
            model.quantize_weights(m, **kwargs)
    with pytest.raises(ValueError, match="divisible"):
        model.prune_oneshot(m, method="magnitude", n=2, m=3, layers=["fc1"])
    with pytest.raises(ValueError, match="amount"):
        model.prune_oneshot(m, method="magnitude", amount=1.0)
    with pytest.raises(ValueError, match="conv"):
        model.prune_oneshot(m, method="magnitude", amount=0.5, layers=["conv"])
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())


def test_w8a8_rounds_weights_per_row_and_inputs_per_tensor_and_smoothing_helps():
    from lwt.oneshot import fake_w8a8, fold_smoothing, input_stats, smooth_scales

    torch.manual_seed(0)
    norm, lin = nn.LayerNorm(32), nn.Linear(32, 16)
    with torch.no_grad():
        norm.weight[:2] = 30.0  # two outlier channels after the norm
    m = nn.Sequential(norm, lin).eval()
    xs = [torch.randn(64, 32) for _ in range(4)]
    q = fake_w8a8(m, xs)
    w = m[1].weight.detach()
    step = w.abs().amax(1, keepdim=True) / 127
    assert ((q[1].weight - w).abs() <= step / 2 + 1e-7).all()
    with torch.no_grad():
        amax = max(float(m[0](x).abs().max()) for x in xs)
    assert float(q[1].act_scale) == pytest.approx(amax / 127, rel=1e-6)
    smoothed = copy.deepcopy(m)
    s = smooth_scales(input_stats(m, xs)["1"].amax, [w], alpha=0.5)
    fold_smoothing(smoothed[0], [smoothed[1]], s)
    errors = {
        "per tensor": output_error(m, q, xs),
        "smoothed": output_error(m, fake_w8a8(smoothed, xs), xs),
        "per channel": output_error(m, fake_w8a8(m, xs, per_channel_act=True), xs),
    }
    assert errors["smoothed"] < errors["per tensor"] / 4
    assert errors["per channel"] < errors["per tensor"]
