"""Depth pruning (``lwt.pruning.depth``): which blocks can go, and a dropped block is
exactly the block with its residual branch switched off."""

import copy

import pytest
import torch
import torchvision

from lwt import models
from lwt.pruning import depth


def test_removable_blocks_are_those_with_identity_shortcuts():
    m = models.create_model("resnet20")
    assert depth.removable_blocks(m) == [
        "layer1.0", "layer1.1", "layer1.2", "layer2.1", "layer2.2", "layer3.1",
        "layer3.2",
    ]  # fmt: skip
    r18 = torchvision.models.resnet18()
    assert depth.removable_blocks(r18) == ["layer1.0", "layer1.1", "layer2.1",
                                           "layer3.1", "layer4.1"]  # fmt: skip


def test_dropped_block_equals_a_zero_residual_branch():
    torch.manual_seed(0)
    m = models.create_model("resnet20").eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for bn in m.modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                bn.running_mean.uniform_(-0.2, 0.2)
                bn.running_var.uniform_(0.5, 1.5)
    off = copy.deepcopy(m)
    with torch.no_grad():  # relu(0 + x) = x, since x comes out of a ReLU
        for name in ("layer1.1", "layer3.2"):
            off.get_submodule(name).bn2.weight.zero_()
            off.get_submodule(name).bn2.bias.zero_()
    dropped = depth.drop_blocks(copy.deepcopy(m), ["layer1.1", "layer3.2"])
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(dropped(x), off(x), atol=1e-5)
        assert not torch.allclose(dropped(x), m(x), atol=1e-3)
    assert isinstance(dropped.layer1[1], torch.nn.Identity)
    # the other blocks keep their names: the state dict loads into the same shape
    again = depth.drop_blocks(models.create_model("resnet20"), ["layer1.1", "layer3.2"])
    again.load_state_dict(dropped.state_dict())


def test_bad_names_raise_and_leave_the_model_alone():
    m = models.create_model("resnet20")
    before = copy.deepcopy(m.state_dict())
    with pytest.raises(ValueError, match="layer2.0"):  # a downsampling block
        depth.drop_blocks(m, ["layer1.1", "layer2.0"])
    with pytest.raises(ValueError, match="removable"):
        depth.drop_blocks(m, ["fc"])
    with pytest.raises(TypeError, match="string"):
        depth.drop_blocks(m, "layer1.1")
    assert isinstance(m.layer1[1], models.BasicBlock)
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())
