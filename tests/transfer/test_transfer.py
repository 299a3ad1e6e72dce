"""lwt.transfer: CReLU pairs are exact negations, half the weights, safe conversion."""

import copy

import pytest
import torch
from torch import nn

from lwt import measure, models, transfer


def test_crelu_pairs_are_exact_negations():
    m = transfer.CReLUConv2d(3, 8, relu=False).eval()
    y = m(torch.randn(2, 3, 6, 6))
    assert torch.equal(y[:, 4:], -y[:, :4])
    relu = transfer.CReLUConv2d(3, 8).eval()
    relu.load_state_dict(m.state_dict())
    z = relu(torch.randn(2, 3, 6, 6))
    assert (z >= 0).all()
    # exactly one of each pair is zero wherever the pre-activation is nonzero
    assert torch.all((z[:, :4] == 0) | (z[:, 4:] == 0))


def test_half_the_weights_same_channels():
    plain = nn.Conv2d(16, 32, 3, padding=1, bias=False)
    crelu = transfer.CReLUConv2d(16, 32)
    assert crelu.conv.weight.numel() * 2 == plain.weight.numel()
    assert crelu(torch.randn(1, 16, 8, 8)).shape == (1, 32, 8, 8)


def test_gradients_reach_only_the_learned_half():
    m = transfer.CReLUConv2d(2, 4, bn=False)
    m(torch.randn(3, 2, 5, 5)).sum().backward()
    assert m.conv.weight.grad is not None and m.conv.weight.grad.shape[0] == 2


def test_to_crelu_converts_resnet20_and_trains():
    model = models.create_model("resnet20")
    before = measure.count_params(model)
    names = ["conv1", "layer1.0.conv1", "layer3.2.conv1"]
    transfer.to_crelu(model, names)
    assert isinstance(model.layer1[0].conv1, transfer.CReLUConv2d)
    assert isinstance(model.layer1[0].bn1, nn.Identity)
    saved = (16 * 3 * 9 + 16 * 16 * 9 + 64 * 64 * 9) // 2 + 2 * (8 + 8 + 32)
    assert before - measure.count_params(model) == saved
    out = model(torch.randn(4, 3, 32, 32))
    out.sum().backward()  # the block's in-place ReLU must not break autograd
    assert out.shape == (4, 10)


@pytest.mark.parametrize(
    "names,match",
    [
        (["layer1.0.bn1"], "not an nn.Conv2d"),
        (["nope"], "not an nn.Conv2d"),
        (["fc"], "not an nn.Conv2d"),
    ],
)
def test_bad_names_raise_and_leave_the_model_untouched(names, match):
    model = models.create_model("resnet20")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        transfer.to_crelu(model, ["conv1", *names])
    assert isinstance(model.conv1, nn.Conv2d)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


def test_odd_channels_and_a_string_raise():
    with pytest.raises(ValueError, match="even"):
        transfer.CReLUConv2d(3, 7)
    with pytest.raises(TypeError, match="list"):
        transfer.to_crelu(models.create_model("resnet20"), "conv1")
    net = nn.Sequential()
    net.conv1, net.bn1 = nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5)
    with pytest.raises(ValueError, match="odd"):
        transfer.to_crelu(net, ["conv1"])


# ------------------------------------------------------------ rotation / flip banks
R = transfer.rotations


@pytest.mark.parametrize("group", ["p4", "p4m"])
def test_transforms_form_the_group(group):
    x = torch.randn(5, 5)
    for a in R.GROUPS[group]:
        assert R.compose(a, R.inverse(a)) == (0, 0)
        for b in R.GROUPS[group]:
            ab = R.transform(x, R.compose(a, b))
            assert torch.equal(R.transform(R.transform(x, b), a), ab)


@pytest.mark.parametrize("group", ["p4", "p4m"])
def test_layers_are_equivariant(group):
    torch.manual_seed(0)
    gs = R.GROUPS[group]
    index = {g: j for j, g in enumerate(gs)}
    lift = R.LiftingConv2d(2, 3, 3, group=group)
    conv = R.GroupConv2d(3, 2, 3, group=group, padding=1)
    x = torch.randn(2, 2, 9, 9)

    def net(v):
        return conv(torch.relu(lift(v)))

    f = net(x).unflatten(1, (2, len(gs)))  # (N, fields, |G|, H, W)
    for u in gs:
        got = net(R.transform(x, u)).unflatten(1, (2, len(gs)))
        # rotating the input rotates every plane and permutes them: g -> u^-1 g
        want = torch.stack(
            [R.transform(f[:, :, index[R.compose(R.inverse(u), g)]], u) for g in gs], 2
        )
        assert torch.allclose(got, want, atol=1e-5), u


def test_rot90_of_the_input_shifts_the_p4_axis_cyclically():
    torch.manual_seed(0)
    lift = R.LiftingConv2d(1, 1, 3)
    x = torch.randn(1, 1, 8, 8)
    f, fr = lift(x)[0], lift(torch.rot90(x, 1, (-2, -1)))[0]
    for g in range(4):
        want = torch.rot90(f[(g - 1) % 4], 1, (-2, -1))
        assert torch.allclose(fr[g], want, atol=1e-6)


@pytest.mark.parametrize("group", ["p4", "p4m"])
def test_p4cnn_is_invariant_to_the_group_and_freezes_exactly(group, tmp_path):
    torch.manual_seed(0)
    net = R.P4CNN(4, group=group)
    net.train()
    net(torch.randn(8, 1, 28, 28))  # BN statistics that are not the identity
    net.eval()
    x = torch.randn(3, 1, 28, 28)
    y = net(x)
    for u in R.GROUPS[group]:
        assert torch.allclose(net(R.transform(x, u)), y, atol=1e-4)
    frozen = R.freeze(copy.deepcopy(net))
    assert not any(isinstance(m, R._GroupConv) for m in frozen.modules())
    assert torch.allclose(frozen(x), y, atol=1e-5)
    path = tmp_path / "p4cnn.onnx"
    torch.onnx.export(frozen, (x,), str(path), dynamo=False)
    assert path.stat().st_size > 0


def test_free_parameters_and_effective_filters():
    lift = R.LiftingConv2d(3, 8, 3, bias=False)
    conv = R.GroupConv2d(8, 8, 3, group="p4m", bias=False)
    assert lift.bank().shape == (32, 3, 3, 3) and lift.weight.numel() * 4 == 32 * 27
    assert conv.bank().shape == (64, 64, 3, 3)
    assert conv.weight.numel() * 8 == conv.bank().numel()
    z2, p4 = models.create_model("z2cnn"), R.P4CNN(9)
    assert measure.count_params(p4) <= measure.count_params(z2)
    # P4CNN's docstring: 9 fields is the widest p4 model with no more weights than z2cnn
    assert (measure.count_params(p4), measure.count_params(z2)) == (20_539, 21_630)
    assert measure.count_params(R.P4CNN(10)) == 24_620


def test_gradients_reach_only_the_base_filters():
    conv = R.GroupConv2d(2, 3, 3)
    assert [n for n, _ in conv.named_parameters()] == ["weight", "bias"]
    conv(torch.randn(1, 8, 5, 5)).sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.shape == (3, 2, 4, 3, 3)


def test_bank_is_generated_by_rotation():
    w = torch.randn(1, 1, 3, 3)
    bank = R.lifting_bank(w, "p4")
    for r in range(4):
        assert torch.equal(bank[r, 0], torch.rot90(w[0, 0], r))


def test_rotation_banks_reject_bad_input():
    with pytest.raises(ValueError, match="kernel_size"):
        R.LiftingConv2d(1, 4, (3, 5))
    with pytest.raises(ValueError, match="group"):
        R.GroupConv2d(4, 4, 3, group="p6")
    with pytest.raises(ValueError, match="reduce"):
        R.group_pool(torch.randn(1, 8, 2, 2), "p4", reduce="sum")


def test_the_control_repeats_the_half_filters_with_the_same_cost():
    """negate=False: [z, z] instead of [z, -z], same parameters, MACs and widths."""
    from lwt import recipes

    x = torch.randn(2, 3, 8, 8)
    torch.manual_seed(0)
    crelu = transfer.CReLUConv2d(3, 8, relu=False).eval()
    torch.manual_seed(0)
    control = transfer.CReLUConv2d(3, 8, relu=False, negate=False).eval()
    with torch.no_grad():
        z = crelu(x)[:, :4]
        assert torch.equal(control(x), torch.cat([z, z], 1))
        assert torch.equal(crelu(x), torch.cat([z, -z], 1))
    a, b = recipes.build("resnet20-crelu"), recipes.build("resnet20-crelu-control")
    assert measure.count_params(a) == measure.count_params(b)
    assert measure.count_macs(a, (3, 32, 32)) == measure.count_macs(b, (3, 32, 32))
    assert not b.conv1.negate and a.conv1.negate
