from fractions import Fraction

import pytest
import torch
from torch import nn

from lwt import models
from lwt import quantization as Q
from lwt.quantization import integer, observers

SEED_X = torch.tensor([0.2, -0.5, 1.1, 0.8])


def test_seed_example_min_max_levels():
    lo, hi = SEED_X.min(), SEED_X.max()
    s = (hi - lo) / 3  # q = round((x - min) / s)
    assert torch.round((SEED_X - lo) / s).tolist() == [1, 0, 3, 2]
    scale, zero = Q.qparams(lo, hi, 2)  # integer zero point: 0.0 is exact
    assert int(zero) == 1 and float(scale) == pytest.approx(1.6 / 3)
    # 0.8 / s = 1.5 exactly: a rounding tie. Float arithmetic lands just below it.
    assert Q.quantize(SEED_X, scale, zero, 2).tolist() == [1, 0, 3, 2]
    ref = torch.fake_quantize_per_tensor_affine(SEED_X, scale, zero, 0, 3)
    assert (ref / scale + zero).round().tolist() == [1, 0, 3, 2]
    exact = Fraction(8, 10) / (Fraction(16, 10) / 3)
    assert exact == Fraction(3, 2) and round(exact) + 1 == 3  # half-to-even: 2, +Z


def test_matches_torch_fake_quant_per_tensor_and_per_channel():
    torch.manual_seed(0)
    x = torch.randn(1000) * 3
    s, z = Q.qparams(x.min(), x.max(), 8)
    ref = torch.fake_quantize_per_tensor_affine(x, s, z, 0, 255)
    assert torch.equal(Q.fake_quantize(x, s, z, 8), ref)
    w = torch.randn(16, 8, 3, 3)
    lo, hi = w.flatten(1).aminmax(dim=1)
    s, z = Q.qparams(lo, hi, 8, symmetric=True)
    assert s.shape == (16,) and torch.equal(z, torch.zeros(16, dtype=torch.int32))
    ref = torch.fake_quantize_per_channel_affine(w, s, z, 0, -127, 127)
    fq = Q.fake_quantize(w, s, z, 8, symmetric=True, axis=0)
    assert torch.equal(fq, ref)


@pytest.mark.parametrize("bits", [2, 4, 8, 16])
def test_round_trip_error_at_most_half_a_step(bits):
    x = torch.linspace(-1.3, 2.1, 997)
    s, z = Q.qparams(x.min(), x.max(), bits)
    err = (Q.dequantize(Q.quantize(x, s, z, bits), s, z) - x).abs()
    assert err.max() <= s / 2 + 1e-6
    assert Q.dequantize(Q.quantize(torch.zeros(1), s, z, bits), s, z) == 0  # exact 0


def test_per_channel_scales_follow_each_channel():
    w = torch.stack([torch.linspace(-1, 1, 9), torch.linspace(-4, 4, 9)])
    s, _ = Q.qparams(*w.aminmax(dim=1), 8, symmetric=True)
    assert torch.allclose(s, torch.tensor([1 / 127, 4 / 127]))


def test_ste_gradient_is_the_clipping_mask():
    x = torch.tensor([-3.0, -0.4, 0.0, 0.7, 2.5], requires_grad=True)
    s, z = Q.qparams(-1.0, 1.0, 4)
    Q.fake_quantize(x, s, z, 4).sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 1, 0]
    y = x.detach().requires_grad_()
    torch.fake_quantize_per_tensor_affine(y, float(s), int(z), 0, 15).sum().backward()
    assert torch.equal(x.grad, y.grad)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: Q.qrange(0), "bits must be in"),
        (lambda: Q.qrange(33), "bits must be in"),
        (lambda: Q.qparams(0.0, 1.0, 1, symmetric=True), "bits >= 2"),
        (lambda: Q.quantize(torch.ones(3), 0.0, 0), "scale must be > 0"),
        (lambda: Q.quantize(torch.ones(3), -1.0, 0), "scale must be > 0"),
        (lambda: Q.quantize(torch.ones(0), 1.0, 0), "empty"),
        (lambda: Q.quantize(torch.ones(2, 3), torch.ones(3), 0, axis=0), "axis 0"),
        (lambda: Q.quantize(torch.ones(2, 3), torch.ones(2), 0, axis=2), "axis must"),
        (lambda: observers.make_observer("nope"), "observer"),
    ],
)
def test_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bits_must_be_int():
    with pytest.raises(TypeError, match="bits"):
        Q.qrange(8.0)


def test_observers_clip_outliers_differently():
    torch.manual_seed(0)
    x = torch.randn(50_000)
    x[0] = 40.0  # one outlier
    ranges = {}
    for name in observers.OBSERVERS:
        obs = observers.make_observer(name)
        obs(x)
        ranges[name] = float(obs.range(4, False)[1])
    assert ranges["minmax"] == 40.0 and ranges["moving"] == 40.0
    assert ranges["percentile"] < 5 and ranges["mse"] < ranges["minmax"] / 2


def test_mse_observer_minimises_error():
    torch.manual_seed(0)
    x = torch.randn(20_000)
    obs = observers.MSEObserver()
    obs(x)

    def mse(lo, hi):
        s, z = Q.qparams(lo, hi, 4)
        return float((Q.fake_quantize(x, s, z, 4) - x).pow(2).mean())

    assert mse(*obs.range(4, False)) < mse(x.min(), x.max())


def test_fold_batchnorm_keeps_outputs():
    torch.manual_seed(0)
    model = models.create_model("resnet20").eval()
    for m in model.modules():  # non-trivial BN statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
    folded = Q.fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(4, 3, 32, 32)
    assert torch.allclose(folded(x), model(x), atol=1e-4)


def test_quantize_model_and_calibrate():
    torch.manual_seed(0)
    model = models.create_model("lenet5").eval()
    x = torch.randn(64, 1, 28, 28)
    qm = Q.quantize_model(model)
    names = [n for n, m in qm.named_modules() if isinstance(m, Q.FakeQuant)]
    acts = Q.activation_quantizers(qm)
    assert len(acts) == 5  # input, conv1, conv2, fc1(+relu), fc2
    assert sum("parametrizations" in n for n in names) == 4  # one per weight
    Q.calibrate(qm, [x[:32], x[32:]])
    assert all(a.enabled and not a.observing for a in acts)
    y, ref = qm(x), model(x)
    assert not torch.equal(y, ref)
    assert (y - ref).abs().max() < 0.05 * ref.abs().max()
    # every quantized activation lies on its grid
    out = acts[-1]
    q = y / out.scale + out.zero_point
    assert torch.allclose(q, q.round(), atol=1e-3)


def test_integer_reference_within_one_lsb():
    torch.manual_seed(0)
    for layer, shape in (
        (nn.Conv2d(3, 8, 3, padding=1, stride=2), (4, 3, 9, 9)),
        (nn.Linear(20, 7), (5, 20)),
    ):
        net = nn.Sequential(layer, nn.ReLU()).eval()
        qm = Q.quantize_model(net)
        x = torch.randn(shape)
        Q.calibrate(qm, [x])
        x_fq, y_fq, relu = Q.layer_quantizers(qm, "0")
        assert [x_fq, y_fq] == Q.activation_quantizers(qm) and relu
        x_q = Q.quantize(x, x_fq.scale, x_fq.zero_point)
        y_q = integer.integer_forward(qm.get_submodule("0"), x_q, x_fq, y_fq, relu=relu)
        ref = Q.quantize(qm(x), y_fq.scale, y_fq.zero_point)
        assert y_q.dtype == torch.int32 and y_q.shape == ref.shape
        assert (y_q - ref).abs().max() <= 1
        # a per-channel requantization of one's own (notebook 02) gives the same codes
        calls = []

        def mine(acc, M, zp, calls=calls):
            calls.append(M)
            return integer.requantize(acc, M, zp, 8)

        y_mine = integer.integer_forward(
            qm.get_submodule("0"), x_q, x_fq, y_fq, relu=relu, rescale=mine
        )
        assert torch.equal(y_mine.int(), y_q) and len(calls) == y_q.shape[1]


def test_checkpoint_round_trip_keeps_activation_ranges():
    torch.manual_seed(0)
    model = models.create_model("lenet300").eval()
    qm = Q.quantize_model(model, weight_bits=4)
    Q.calibrate(qm, [torch.randn(16, 1, 28, 28)])
    fresh = Q.set_mode(
        Q.quantize_model(models.create_model("lenet300"), weight_bits=4),
        observe=False,
        quantize=True,
    )
    fresh.load_state_dict(qm.state_dict())
    x = torch.randn(8, 1, 28, 28)
    assert torch.equal(fresh(x), qm(x))


def test_layer_quantizers_bad_name():
    qm = Q.quantize_model(nn.Sequential(nn.Linear(4, 2)).eval())
    with pytest.raises(ValueError, match="not a layer"):
        Q.layer_quantizers(qm, "nope")
    with pytest.raises(TypeError, match="fake-quantized weight"):
        integer.quantized_weight(nn.Linear(2, 2))


def test_dynamic_weight_range_follows_in_place_updates():
    layer = nn.Linear(4, 3)
    qm = Q.quantize_model(nn.Sequential(layer).eval(), act_bits=None)
    x = torch.randn(2, 4)
    y1 = qm(x)
    fq = qm.get_submodule("0").parametrizations.weight[0]
    s1 = fq.scale.clone()
    with torch.no_grad():
        qm.get_submodule("0").parametrizations.weight.original.mul_(2)
    y2 = qm(x)
    assert torch.allclose(fq.scale, 2 * s1) and not torch.equal(y1, y2)


def test_requantize_is_fixed_point_rounding_of_m_times_acc():
    """(acc·M0 + 2^(n−1)) >> n equals round-half-up of M·acc in exact arithmetic."""
    import math
    from fractions import Fraction

    from lwt.quantization import fixed_point, requantize

    g = torch.Generator().manual_seed(0)
    acc = torch.randint(-(2**20), 2**20, (500,), generator=g)
    for m in (0.00125, 0.3, 0.0421):
        m0, n = fixed_point(torch.tensor(m, dtype=torch.float64))
        assert 2**30 <= m0 < 2**31 and abs(m0.item() / 2 ** n.item() - m) < m * 2**-30
        y = requantize(acc, torch.tensor(m, dtype=torch.float64), 7, 8)
        exact = Fraction(int(m0), 2 ** int(n))
        want = [
            min(255, max(0, 7 + math.floor(a * exact + Fraction(1, 2))))
            for a in acc.tolist()
        ]
        assert y.tolist() == want
    relu = requantize(torch.tensor([-500, 0, 500]), 0.01, 10, 8, relu=True)
    assert relu.tolist() == [10, 10, 15]


def test_one_symmetric_flag_for_qparams_quantize_and_fake_quantize():
    w = torch.tensor([-1.0, -0.6, 0.0, 0.26, 1.0])
    s, z = Q.qparams(w.min(), w.max(), 4, symmetric=True)
    q = Q.quantize(w, s, z, 4, symmetric=True)
    assert q.tolist() == [-7, -4, 0, 2, 7] and int(z) == 0  # narrow: no -8
    assert torch.equal(Q.fake_quantize(w, s, z, 4, symmetric=True), q * s)
    with pytest.raises(TypeError):
        Q.quantize(w, s, z, 4, signed=True)  # one flag, not two


def test_qat_takes_retrain_by_keyword():
    qm = Q.quantize_model(nn.Sequential(nn.Linear(4, 2)), act_bits=None)
    seen = []
    assert Q.qat(qm, retrain=seen.append) is qm and seen == [qm]
    with pytest.raises(TypeError):
        Q.qat(qm, seen.append)
