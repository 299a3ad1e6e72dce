"""lwt.transfer: CReLU pairs are exact negations, half the weights, safe conversion."""

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
