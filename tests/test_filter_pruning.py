import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from lwt import filter_pruning as fp
from lwt import measure, models


def test_l1_ranking_and_kept_indices():
    conv = nn.Conv2d(1, 4, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([3.0, -1.0, 2.0, 0.5]).view(4, 1, 1, 1))
    assert fp.l1_norms(conv).tolist() == [3.0, 1.0, 2.0, 0.5]
    assert fp.smallest_l1_removed(conv, 0.5).tolist() == [0, 2]


def test_zero_filters_removed_leave_output_unchanged():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    with torch.no_grad():
        model[0].weight[[1, 4, 5, 7]] = 0
        model[0].bias[[1, 4, 5, 7]] = 0
    x = torch.randn(2, 3, 10, 10)
    before = model(x)
    keep = fp.prune_filters(model, "0", "2", 0.5)
    assert keep.tolist() == [0, 2, 3, 6]
    assert model[0].out_channels == 4 and model[2].in_channels == 4
    assert torch.allclose(model(x), before, atol=1e-6)


def test_conv_to_linear_through_flatten_copies_weights_exactly():
    torch.manual_seed(0)
    lenet = models.LeNet5()
    old_fc1 = lenet.fc1.weight.detach().clone()  # (500, 800) = 50 channels x 16
    old_conv2 = lenet.conv2.weight.detach().clone()
    keep = fp.prune_filters(lenet, "conv2", "fc1", 0.5)
    assert lenet.fc1.in_features == 25 * 16 and lenet.conv2.out_channels == 25
    idx = (keep[:, None] * 16 + torch.arange(16)).flatten()
    assert torch.equal(lenet.fc1.weight, old_fc1[:, idx])
    assert torch.equal(lenet.conv2.weight, old_conv2[keep])
    assert lenet(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_resnet_blocks_zero_channels_unchanged_and_fewer_macs():
    torch.manual_seed(0)
    model = models.CifarResNet(20).eval()
    block = model.layer2[1]
    with torch.no_grad():  # make 16 of 32 inner channels exactly dead
        block.conv1.weight[:16] = 0
        block.bn1.weight[:16] = 0
        block.bn1.bias[:16] = 0
    x = torch.randn(2, 3, 32, 32)
    before = model(x)
    fp.prune_resnet_blocks(model, {"layer2.1": 0.5})
    assert (
        block is not model.layer2[1].conv1 and model.layer2[1].conv1.out_channels == 16
    )
    assert torch.allclose(model(x), before, atol=1e-5)
    base = measure.count_macs(models.CifarResNet(20), (3, 32, 32))
    fp.prune_resnet_blocks(model, 0.4)
    assert base / measure.count_macs(model, (3, 32, 32)) > 1.5
    assert model(x).shape == (2, 10)  # residual adds still line up
    assert all(
        b.conv2.out_channels == b.bn2.num_features
        for b in model.modules()
        if isinstance(b, BasicBlock)
    )


def test_bad_inputs():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 3))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        fp.prune_filters(model, "0", "2", 1.0)
    with pytest.raises(ValueError, match="keep at least 1"):
        fp.prune_filters(model, "0", "2", 0.99)
    with pytest.raises(TypeError, match="Conv2d or Linear"):
        fp.prune_filters(model, "1", "2", 0.5)
    with pytest.raises(ValueError, match="not directly connected"):
        fp.prune_filters(
            nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(5, 4, 3)), "0", "1", 0.5
        )
    with pytest.raises(TypeError, match="grouped"):
        fp.l1_norms(nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(TypeError, match="BasicBlock"):
        fp.prune_resnet_blocks(models.LeNet5(), 0.5)
    with pytest.raises(ValueError, match="not BasicBlocks"):
        fp.prune_resnet_blocks(models.CifarResNet(20), {"layer9.0": 0.5})


def test_multiple_of_rounds_kept_widths():
    conv = nn.Conv2d(3, 64, 3)
    assert len(fp.smallest_l1_removed(conv, 0.4)) == 38
    assert len(fp.smallest_l1_removed(conv, 0.4, multiple_of=8)) == 40
    assert len(fp.smallest_l1_removed(conv, 0.95, multiple_of=8)) == 8
    with pytest.raises(ValueError, match="multiple_of"):
        fp.smallest_l1_removed(conv, 0.4, multiple_of=0)
