"""lwt.oneshot: group-wise RTN and packing, GPTQ, Wanda, N:M masks and SparseGPT, each
against a reference computed here."""

import math

import pytest
import torch
from torch import nn

from lwt import oneshot
from lwt.oneshot import groupwise


def layer_and_inputs(rows=16, cols=64, n=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g)
    # correlated inputs with a few large features, as real activations have
    x = torch.randn(n, cols, generator=g) @ (
        torch.eye(cols) + 0.3 * torch.randn(cols, cols, generator=g)
    )
    x[:, :4] *= 8
    return w, x


def test_rtn_by_hand_and_its_bounds():
    w = torch.tensor([[0.0, 1.0, 2.0, 3.0, -1.0, 0.0, 1.0, 2.0]])
    deq, codes, scale, zero = groupwise.rtn(w, 2, 4)  # two groups of 4, 4 levels each
    assert scale.tolist() == [[1.0, 1.0]] and zero.tolist() == [[0.0, 1.0]]
    assert codes.tolist() == [[0, 1, 2, 3, 0, 1, 2, 3]] and torch.equal(deq, w)
    w, _ = layer_and_inputs()
    deq, codes, scale, zero = groupwise.rtn(w, 4, 16)
    assert codes.min() >= 0 and codes.max() <= 15
    step = scale.repeat_interleave(16, dim=1)
    assert ((deq - w).abs() <= step / 2 + 1e-5).all()  # within half a step of its group


def test_bad_bits_and_groups_are_refused():
    w = torch.randn(4, 12)
    with pytest.raises(ValueError, match=r"\[2, 8\]"):
        groupwise.rtn(w, 1, 4)
    with pytest.raises(ValueError, match="divide"):
        groupwise.rtn(w, 4, 5)
    with pytest.raises(TypeError):
        groupwise.rtn(w, 4.0, 4)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_packing_round_trips_and_counts_real_bytes(bits):
    codes = torch.randint(
        0, 2**bits, (7, 33), generator=torch.Generator().manual_seed(bits)
    )
    blob = groupwise.pack_codes(codes, bits)
    assert len(blob) == math.ceil(codes.numel() * bits / 8)
    assert torch.equal(
        groupwise.unpack_codes(blob, bits, codes.numel()).reshape(7, 33), codes
    )
    with pytest.raises(ValueError):
        groupwise.pack_codes(codes + 2**bits, bits)
    assert groupwise.packed_bytes(64, 128, 4, 32) == 64 * 128 // 2 + 2 * 256 + 128


def test_calibration_statistics_match_the_inputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).train()
    x = torch.randn(4, 7, 6)  # tokens: every leading dimension is a sample
    stats = oneshot.input_stats(model, [x[:2], (x[2:], None)])
    s0 = stats["0"]
    flat = x.reshape(-1, 6).double()
    assert s0.n == 28 and model.training
    assert torch.allclose(s0.hessian, (2 * flat.T @ flat / 28).float())
    assert torch.allclose(s0.norms, flat.norm(dim=0).float())
    assert torch.allclose(s0.amax, flat.abs().amax(0).float())
    with pytest.raises(ValueError, match="not nn.Linear"):
        oneshot.input_stats(model, [x], layers=["1"])


def test_gptq_is_never_worse_than_rtn_on_its_own_calibration_data():
    for seed in range(3):
        w, x = layer_and_inputs(seed=seed)
        h = 2 * x.T @ x / len(x)
        for bits, g in ((4, 16), (3, 32), (4, 64)):
            rtn = groupwise.rtn(w, bits, g)[0]
            gq, codes, scale, zero = oneshot.gptq_quantize(w, h, bits, g)
            assert torch.allclose(
                gq, groupwise.dequantize_groups(codes, scale, zero, g)
            )
            assert oneshot.layer_error(w, gq, h) < oneshot.layer_error(w, rtn, h)
    direct = ((w - rtn) @ x.T).pow(2).sum() / len(x)  # ||W X - Ŵ X||² / n
    assert oneshot.layer_error(w, rtn, h) == pytest.approx(float(direct), rel=1e-3)


def test_two_of_four_masks_keep_exactly_two_in_every_group():
    w, x = layer_and_inputs()
    norms = x.norm(dim=0)
    keep = oneshot.row_mask(oneshot.wanda_scores(w, norms), n=2, m=4)
    assert (keep.reshape(16, -1, 4).sum(-1) == 2).all()
    pruned = oneshot.sparsegpt(w, 2 * x.T @ x / len(x), n=2, m=4)
    assert ((pruned != 0).reshape(16, -1, 4).sum(-1) == 2).all()
    with pytest.raises(ValueError, match="divisible"):
        oneshot.row_mask(torch.randn(3, 10), n=2, m=4)
    with pytest.raises(ValueError, match="amount"):
        oneshot.row_mask(torch.randn(3, 8), amount=1.0)


def test_wanda_scores_and_row_masks_by_hand():
    w = torch.tensor([[1.0, -2.0, 3.0, -4.0]])
    norms = torch.tensor([4.0, 1.0, 1.0, 0.5])
    s = oneshot.wanda_scores(w, norms)
    assert s.tolist() == [[4.0, 2.0, 3.0, 2.0]]
    assert oneshot.row_mask(s, amount=0.5).tolist() == [[True, False, True, False]]
    assert oneshot.row_mask(w.abs(), amount=0.5).tolist() == [
        [False, False, True, True]
    ]


def test_sparsegpt_beats_magnitude_and_wanda_at_the_same_sparsity():
    w, x = layer_and_inputs()
    h = 2 * x.T @ x / len(x)
    err = {}
    for name, keep in (
        ("magnitude", oneshot.row_mask(w.abs(), amount=0.5)),
        ("wanda", oneshot.row_mask(oneshot.wanda_scores(w, x.norm(dim=0)), amount=0.5)),
    ):
        err[name] = oneshot.layer_error(w, w * keep, h)
    pruned = oneshot.sparsegpt(w, h, amount=0.5)
    assert (pruned == 0).float().mean() == pytest.approx(0.5, abs=1 / 64)
    err["sparsegpt"] = oneshot.layer_error(w, pruned, h)
    assert err["sparsegpt"] < err["wanda"] < err["magnitude"]


def test_awq_never_worse_than_rtn_and_better_with_salient_channels():
    w, x = layer_and_inputs()
    h = 2 * x.T @ x / len(x)
    amean = x.abs().mean(0)
    approx, s, alpha = oneshot.awq_quantize(w, h, amean, 3, 16)
    rtn = groupwise.rtn(w, 3, 16)[0]
    assert oneshot.layer_error(w, approx, h) < oneshot.layer_error(w, rtn, h)
    assert 0 < alpha <= 1 and s.shape == (64,)
    assert torch.allclose(oneshot.awq_scales(amean, 0.0), torch.ones(64))
    with pytest.raises(ValueError, match="amean"):
        oneshot.awq_quantize(w, h, amean[:3], 3, 16)


def test_smoothquant_keeps_the_function_and_balances_the_ranges():
    torch.manual_seed(0)
    norm, lin = nn.LayerNorm(16), nn.Linear(16, 8)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
        norm.weight[:2] *= 20  # two outlier channels
        norm.bias.uniform_(-1, 1)
    x = torch.randn(64, 16)
    before = lin(norm(x))
    amax = norm(x).abs().amax(0)
    s = oneshot.smooth_scales(amax, [lin.weight], alpha=0.5)
    wmax = lin.weight.abs().amax(0)
    oneshot.fold_smoothing(norm, [lin], s)
    assert torch.allclose(lin(norm(x)), before, atol=1e-4)  # the same function
    x_range, w_range = norm(x).abs().amax(0), lin.weight.abs().amax(0)
    assert torch.allclose(x_range, w_range, rtol=1e-4)  # alpha = 0.5: equal ranges
    assert torch.allclose(x_range, (amax * wmax).sqrt(), rtol=1e-4)
    with pytest.raises(ValueError, match="alpha"):
        oneshot.smooth_scales(amax, [lin.weight], alpha=1.5)
