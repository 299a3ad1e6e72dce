import pytest
import torch

from lwt import models
from lwt.measure import count_params


@pytest.mark.parametrize(
    "name, params, shape",
    [
        ("lenet300", 266_610, (1, 28, 28)),  # Han et al. 2015: 267K
        ("lenet5", 431_080, (1, 28, 28)),  # Han et al. 2015: 431K
        ("resnet20", 269_722, (3, 32, 32)),  # He et al. 2016: 0.27M
        ("resnet56", 853_018, (3, 32, 32)),  # He et al. 2016: 0.85M
    ],
)
def test_param_counts_and_shapes(name, params, shape):
    model = models.create_model(name)
    assert count_params(model) == params
    assert models.input_shape_of(name) == shape
    assert model(torch.zeros(2, *shape)).shape == (2, 10)


def test_pad_shortcut():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    y = models.PadShortcut(5, 2)(x)
    assert y.shape == (2, 5, 2, 2)
    assert torch.equal(y[:, :3], x[:, :, ::2, ::2])
    assert not y[:, 3:].any()


def test_resnet_structure():
    m = models.CifarResNet(20)
    convs = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
    assert len(convs) == 19  # + fc = 20 weighted layers
    assert [len(m.layer1), len(m.layer2), len(m.layer3)] == [3, 3, 3]


def test_bad_names_and_depths():
    with pytest.raises(ValueError, match="unknown"):
        models.create_model("vgg")
    with pytest.raises(ValueError, match="unknown"):
        models.dataset_of("vgg")
    with pytest.raises(ValueError, match="6n\\+2"):
        models.CifarResNet(21)
    with pytest.raises(ValueError, match="width"):
        models.CifarResNet(20, width=0)


def test_cct4_shapes_parameters_and_attention_formula():
    from lwt.models import cct

    torch.manual_seed(0)
    model = models.create_model("cct4").eval()
    assert count_params(model) == 483_659
    assert models.dataset_of("cct4") == "cifar10"
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 10) and model.tokens(x).shape == (2, 64, 128)
    attn = model.blocks[0].attn
    t = torch.randn(2, 64, 128)
    q, k, v = attn.split(t)  # (N, H, T, d) each
    a = torch.softmax(q @ k.transpose(-1, -2) / attn.head_dim**0.5, dim=-1)
    by_hand = attn.proj((a @ v).transpose(1, 2).reshape(2, 64, -1))
    assert torch.allclose(attn(t), by_hand, atol=1e-5)
    macs = cct.attention_macs(64, 128, 4, 32)
    assert macs == 64 * 128 * 384 + 2 * 4 * 64 * 64 * 32 + 64 * 128 * 128
    with pytest.raises(ValueError, match="heads"):
        cct.CCT(dim=128, heads=3)
