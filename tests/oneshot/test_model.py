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
        stored = scale.half().float()  # codes are chosen against the scale as stored
        assert torch.equal(
            ql.codes.long(), groupwise.quantize_groups(w, stored, zero, 4, 8)
        )
        assert (ql.codes.long() != codes).float().mean() < 0.01  # RTN up to fp16 ties
        want = groupwise.dequantize_groups(ql.codes, stored, zero, 8)
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


def test_layers_are_compressed_in_order_each_from_the_already_compressed_model():
    """GPTQ's sequential order: layer 2's statistics come from the model whose layer 0
    is already quantized (or pruned), not from the float model."""
    from lwt.oneshot import calibration, gptq, sparse

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10)).eval()
    xs = [torch.randn(32, 32) for _ in range(4)]
    q = model.quantize_weights(m, xs, bits=3, group_size=16, method="gptq")
    h0 = calibration.input_stats(m, xs, ["0"])["0"].hessian
    assert torch.equal(q[0].codes.long(), gptq.gptq_quantize(m[0].weight, h0, 3, 16)[1])
    part = model.quantize_weights(m, xs, bits=3, group_size=16, method="gptq",
                                  layers=["0"])  # fmt: skip
    h2 = calibration.input_stats(part, xs, ["2"])["2"].hessian
    h2_float = calibration.input_stats(m, xs, ["2"])["2"].hessian
    assert torch.equal(q[2].codes.long(), gptq.gptq_quantize(m[2].weight, h2, 3, 16)[1])
    assert not torch.equal(
        q[2].codes.long(), gptq.gptq_quantize(m[2].weight, h2_float, 3, 16)[1]
    )
    p = model.prune_oneshot(m, xs, method="sparsegpt", amount=0.5)
    w0 = sparse.sparsegpt(m[0].weight, h0, amount=0.5)
    first_pruned = copy.deepcopy(m)
    with torch.no_grad():
        first_pruned[0].weight.copy_(w0)
    h2p = calibration.input_stats(first_pruned, xs, ["2"])["2"].hessian
    assert torch.allclose(p[2].weight, sparse.sparsegpt(m[2].weight, h2p, amount=0.5))


def test_a_layer_that_its_forward_never_calls_is_left_out_or_refused():
    """nn.MultiheadAttention reads out_proj's weight directly: compressing it through
    hooks would see no inputs (and zero the layer)."""

    class WithMHA(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
            self.fc = nn.Linear(16, 4)
            self.unused = nn.Linear(16, 16)

        def forward(self, x):
            return self.fc(self.attn(x, x, x)[0])

    torch.manual_seed(0)
    m = WithMHA().eval()
    xs = [torch.randn(4, 6, 16) for _ in range(2)]
    assert "attn.out_proj" not in model.weight_layers(m)
    with pytest.raises(ValueError, match="not Linear"):
        model.prune_oneshot(m, xs, method="wanda", amount=0.5, layers=["attn.out_proj"])
    with pytest.raises(ValueError, match="never called"):
        model.prune_oneshot(m, xs, method="sparsegpt", amount=0.5, layers=["unused"])
    p = model.prune_oneshot(m, xs, method="sparsegpt", amount=0.5, layers=["fc"])
    assert (p.fc.weight != 0).float().mean() == 0.5


def test_crafted_headers_are_refused_with_value_errors(tmp_path):
    import json
    import struct

    m = small()
    blob = packed.to_packed(model.quantize_weights(m, bits=4, group_size=8))
    header_len = struct.unpack("<I", blob[5:9])[0]
    header, payload = json.loads(blob[9 : 9 + header_len]), blob[9 + header_len :]

    def with_entries(change):
        h = copy.deepcopy(header)
        change(h["entries"])
        text = json.dumps(h).encode()
        return blob[:5] + struct.pack("<I", len(text)) + text + payload

    layer = next(i for i, e in enumerate(header["entries"]) if e["kind"] == "linear")
    cases = {
        "a huge zero-row layer": lambda es: es.__setitem__(
            layer, {**es[layer], "shape": [0, 2**44]}),
        "no name": lambda es: es[0].pop("name"),
        "a list as name": lambda es: es[0].__setitem__("name", ["x"]),
        "bool in a shape": lambda es: es[0].__setitem__("shape", [True, 2]),
        "bits as text": lambda es: es[layer].__setitem__("bits", "4"),
        "a huge tensor": lambda es: es[-1].__setitem__("shape", [2**40, 2**40]),
        "twice the same entry": lambda es: es.append(es[0]),
        "a weight tensor inside a quantized layer": lambda es: es.append(
            {**es[-1], "name": es[layer]["name"] + ".weight"}),
    }  # fmt: skip
    for name, change in cases.items():  # anything but a ValueError fails the test
        try:
            packed.packed_state_dict(with_entries(change))
        except ValueError:
            continue
        pytest.fail(f"{name}: accepted")
    nested = blob[:5] + struct.pack("<I", 200_000) + b"[" * 200_000 + payload
    with pytest.raises(ValueError):
        packed.packed_state_dict(nested)
    with pytest.raises(ValueError, match="does not hold"):  # a file that covers nothing
        packed.load_packed(with_entries(lambda es: es.clear()), m)


def test_more_bad_arguments_are_refused_before_any_work():
    m = small()
    cases = [
        (model.quantize_weights, dict(bits=4, group_size=8, layers=[])),
        (model.quantize_weights, dict(bits=4, group_size=8, layers=["fc1", "fc1"])),
        (model.quantize_weights, dict(bits=4, group_size=8, layers=[""])),
        (model.quantize_weights, dict(bits=4, group_size="8")),
        (model.quantize_weights, dict(bits=4, group_size=8, method="gptq", damp=2.0)),
        (model.prune_oneshot, dict(method="magnitude", n=True, m=2)),
        (model.prune_oneshot, dict(method="magnitude", amount="0.5")),
    ]
    for fn, kwargs in cases:
        with pytest.raises(ValueError):
            fn(m, batches(), **kwargs)
    codes = torch.full((16, 72), 300)
    with pytest.raises(ValueError, match="codes"):
        GroupQuantized(m.conv, codes, torch.ones(16, 9), torch.zeros(16, 9), bits=4,
                       group_size=8)  # fmt: skip
    with pytest.raises(ValueError, match="scale"):
        GroupQuantized(m.conv, torch.zeros(16, 72), torch.ones(16, 8),
                       torch.zeros(16, 9), bits=4, group_size=8)  # fmt: skip


def test_the_default_fp16_file_loads_within_fp16_rounding_of_the_model(tmp_path):
    m, xs = small(), batches()
    q = model.quantize_weights(m, xs, bits=4, group_size=8, method="gptq")
    loaded = packed.load_packed(packed.to_packed(q), m)  # half=True: biases in fp16
    with torch.no_grad():
        assert (loaded(xs[0]) - q(xs[0])).abs().max() < 1e-3
