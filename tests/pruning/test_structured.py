import copy

import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from lwt import measure, models
from lwt.pruning import structured as fp


def test_l1_ranking_and_kept_indices():
    conv = nn.Conv2d(1, 4, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([3.0, -1.0, 2.0, 0.5]).view(4, 1, 1, 1))
    assert fp.l1_norms(conv).tolist() == [3.0, 1.0, 2.0, 0.5]
    assert fp.filters_to_keep(conv, 0.5).tolist() == [0, 2]


def test_zero_filters_removed_leave_output_unchanged():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    with torch.no_grad():
        model[0].weight[[1, 4, 5, 7]] = 0
        model[0].bias[[1, 4, 5, 7]] = 0
    x = torch.randn(2, 3, 10, 10)
    before = model(x)
    keep = fp.filters_to_keep(model[0], 0.5)
    assert fp.prune_filters(model, "0", "2", 0.5) is model
    assert keep.tolist() == [0, 2, 3, 6]
    assert model[0].out_channels == 4 and model[2].in_channels == 4
    assert torch.allclose(model(x), before, atol=1e-6)


def test_conv_to_linear_through_flatten_copies_weights_exactly():
    torch.manual_seed(0)
    lenet = models.LeNet5()
    old_fc1 = lenet.fc1.weight.detach().clone()  # (500, 800) = 50 channels x 16
    old_conv2 = lenet.conv2.weight.detach().clone()
    keep = fp.filters_to_keep(lenet.conv2, 0.5)
    fp.prune_filters(lenet, "conv2", "fc1", 0.5)
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
    assert len(fp.filters_to_keep(conv, 0.4)) == 38
    assert len(fp.filters_to_keep(conv, 0.4, multiple_of=8)) == 40
    assert len(fp.filters_to_keep(conv, 0.95, multiple_of=8)) == 8
    with pytest.raises(ValueError, match="multiple_of"):
        fp.filters_to_keep(conv, 0.4, multiple_of=0)


# --- helpers ---


def _snapshot(model: nn.Module) -> tuple[dict, list]:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return state, [(n, type(m)) for n, m in model.named_modules()]


def _assert_untouched(model: nn.Module, snap: tuple[dict, list]) -> None:
    state, types = snap
    now = model.state_dict()
    assert now.keys() == state.keys()
    assert all(torch.equal(now[k], state[k]) for k in state)
    assert [(n, type(m)) for n, m in model.named_modules()] == types


class _Cat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3), nn.Conv2d(3, 8, 3)
        self.c = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        return self.c(torch.cat([self.a(x), self.b(x)], 1))


class _TwoConsumers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = (
            nn.Conv2d(3, 8, 3),
            nn.Conv2d(8, 4, 1),
            nn.Conv2d(8, 4, 1),
        )

    def forward(self, x):
        y = torch.relu(self.a(x))
        return self.b(y) + self.c(y)


class _ReturnsIt(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = self.a(x)
        return self.b(y), y


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = self.a(x)
        if y.sum() > 0:  # control flow on a tensor value: fx cannot trace it
            y = -y
        return self.b(y)


class _HardCodedView(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3), nn.Linear(8 * 6 * 6, 3)

    def forward(self, x):
        return self.b(self.a(x).view(-1, 8 * 6 * 6))  # breaks silently if pruned


class _Chain(nn.Module):
    """Every supported op between producer and consumer."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.bn = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)
        self.drop = nn.Dropout2d(0.5)
        self.b = nn.Conv2d(8, 4, 1)
        self.c = nn.Linear(4 * 3 * 3, 5)

    def forward(self, x):
        y = nn.functional.max_pool2d(torch.relu(self.bn(self.a(x))), 2)
        y = self.b(self.drop(y) * 2.0 - 1.0)
        return self.c(nn.functional.relu(y.view(y.size(0), -1)))


def _tiny_bottleneck_resnet(groups: int = 1) -> nn.Module:
    from torchvision.models.resnet import Bottleneck, ResNet

    return ResNet(
        Bottleneck, [1, 1, 1, 1], num_classes=10, groups=groups, width_per_group=16
    )


def _mobilenet() -> nn.Module:
    from torchvision.models import mobilenet_v2

    return mobilenet_v2(num_classes=10)


def _seq() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3)
    )


# --- per_layer (lwt/pruning/_amounts.py) ---


def test_per_layer_expands_checks_and_orders():
    from lwt.pruning._amounts import per_layer

    names = ["a", "b", "c"]
    assert per_layer(0.5, names, "layers") == {"a": 0.5, "b": 0.5, "c": 0.5}
    assert per_layer(0, names, "layers") == dict.fromkeys(names, 0.0)
    out = per_layer({"c": 0.1, "a": 0.2}, iter(names), "layers")
    assert list(out.items()) == [("a", 0.2), ("c", 0.1)]  # order of names
    assert per_layer({}, names, "layers") == {}
    with pytest.raises(
        ValueError, match=r"\['x'\] unknown; choose from \['a', 'b', 'c'\]"
    ):
        per_layer({"x": 0.5, "a": 0.1}, names, "prunable layers")
    with pytest.raises(ValueError, match=r"not prunable layers"):
        per_layer({"x": 0.5}, names, "prunable layers")
    with pytest.raises(ValueError, match=r"'b'.*\[0, 1\)"):
        per_layer({"a": 0.5, "b": 1.0}, names, "layers")
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            per_layer(bad, names, "layers")
    for bad in ("0.5", True, None, [0.5]):
        with pytest.raises(TypeError, match="fraction"):
            per_layer(bad, names, "layers")
    with pytest.raises(TypeError, match="'a'"):
        per_layer({"a": "x"}, names, "layers")


# --- filters_to_keep and the keep_* copies ---


def test_filters_to_keep_ties_types_and_device_dtype():
    conv = nn.Conv2d(2, 4, 1, bias=False).double()
    with torch.no_grad():
        conv.weight.fill_(1.0)
    assert fp.filters_to_keep(conv, 0.5).tolist() == [0, 1]  # ties: lower index
    assert fp.filters_to_keep(conv, 0.0).tolist() == [0, 1, 2, 3]
    for bad in ("0.5", True, None):
        with pytest.raises(TypeError, match="amount"):
            fp.filters_to_keep(conv, bad)
    with pytest.raises(TypeError, match="multiple_of"):
        fp.filters_to_keep(conv, 0.5, multiple_of=2.0)
    lin = nn.Linear(3, 6).double()
    keep = fp.filters_to_keep(lin, 0.5)
    out = fp.keep_outputs(lin, keep)
    assert out.weight.dtype == torch.float64 and out.out_features == 3
    assert torch.equal(out.weight, lin.weight[keep]) and torch.equal(
        out.bias, lin.bias[keep]
    )


def test_keep_copies_check_indices_and_preserve_flags():
    conv = nn.Conv2d(4, 6, 3, stride=2, padding="valid", dilation=1, bias=False)
    conv.weight.requires_grad_(False)
    conv.eval()
    new = fp.keep_outputs(conv, torch.tensor([0, 5]))
    assert (new.stride, new.padding, new.bias) == ((2, 2), "valid", None)
    assert not new.weight.requires_grad and not new.training
    assert fp.keep_inputs(conv, torch.tensor([1, 2])).in_channels == 2
    for bad in (
        torch.tensor([0, 6]),
        torch.tensor([1, 1]),
        torch.tensor([], dtype=torch.long),
    ):
        with pytest.raises(ValueError, match="keep"):
            fp.keep_outputs(conv, bad)
    with pytest.raises(TypeError, match="keep"):
        fp.keep_outputs(conv, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="spatial"):
        fp.keep_inputs(conv, torch.tensor([0]), spatial=4)
    with pytest.raises(ValueError, match="keep"):
        fp.keep_inputs(nn.Linear(12, 2), torch.tensor([3]), spatial=4)  # 3 channels
    with pytest.raises(TypeError, match="BatchNorm1d or BatchNorm2d"):
        fp.keep_bn(nn.GroupNorm(2, 4), torch.tensor([0]))


@pytest.mark.parametrize(
    "affine, stats", [(False, True), (False, False), (True, False)]
)
def test_keep_bn_variants(affine, stats):
    bn = nn.BatchNorm2d(6, affine=affine, track_running_stats=stats, momentum=None)
    if stats:
        bn.running_mean.copy_(torch.arange(6.0))
        bn.num_batches_tracked.fill_(7)
    keep = torch.tensor([1, 4])
    new = fp.keep_bn(bn.eval(), keep)
    assert type(new) is nn.BatchNorm2d and new.num_features == 2
    assert (new.affine, new.track_running_stats, new.momentum) == (affine, stats, None)
    assert not new.training
    if stats:
        assert new.running_mean.tolist() == [1.0, 4.0]
        assert new.num_batches_tracked.item() == 7
    else:
        assert new.running_mean is None and new.num_batches_tracked is None
    assert (new.weight is None) == (not affine)


# --- prune_filters: supported chains ---


def test_batchnorm1d_between_linears():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)
    )
    model[1].running_mean.uniform_(-1, 1)
    model[1].running_var.uniform_(0.5, 2)
    dead = [1, 4, 5, 7]
    with torch.no_grad():
        model[0].weight[dead] = 0
        model[0].bias[dead] = 0
        model[1].weight[dead] = 0
        model[1].bias[dead] = 0
    model.eval()
    x = torch.randn(5, 6)
    before = model(x)
    old_mean = model[1].running_mean.clone()
    keep = fp.filters_to_keep(model[0], 0.5)
    fp.prune_filters(model, "0", "3", 0.5, bn="1")
    assert keep.tolist() == [0, 2, 3, 6]
    assert type(model[1]) is nn.BatchNorm1d and model[1].num_features == 4
    assert torch.equal(model[1].running_mean, old_mean[keep])
    assert model[3].in_features == 4
    assert torch.allclose(model(x), before, atol=1e-6)


@pytest.mark.parametrize("stats", [True, False])
def test_affine_false_batchnorm(stats):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.BatchNorm2d(8, affine=False, track_running_stats=stats),
        nn.ReLU(),
        nn.Conv2d(8, 4, 3),
    ).eval()
    dead = [0, 3, 6, 7]
    with torch.no_grad():
        model[0].weight[dead] = 0
        model[0].bias[dead] = 0
        if stats:
            model[1].running_mean.uniform_(-1, 1)
            model[1].running_mean[dead] = 0
    x = torch.randn(2, 3, 9, 9)
    before = model(x)
    assert fp.filters_to_keep(model[0], 0.5).tolist() == [1, 2, 4, 5]
    assert fp.prune_filters(model, "0", "3", 0.5, bn="1") is model
    assert model[1].num_features == 4 and model[1].weight is None
    assert torch.allclose(model(x), before, atol=1e-5)


def test_chain_of_per_channel_ops_and_view_to_linear():
    torch.manual_seed(0)
    model = _Chain().eval()
    x = torch.randn(2, 3, 8, 8)
    keep = fp.filters_to_keep(model.a, 0.5)
    fp.prune_filters(model, "a", "b", 0.5, bn="bn")
    assert model.a.out_channels == model.bn.num_features == model.b.in_channels == 4
    keep2 = fp.filters_to_keep(model.b, 0.5)
    fp.prune_filters(model, "b", "c", 0.5)  # view(N, -1) into a Linear
    assert len(keep) == 4 and model.c.in_features == 2 * 9 and len(keep2) == 2
    assert model(x).shape == (2, 5)


def test_mobilenet_last_conv_through_pool_flatten_dropout():
    model = _mobilenet().eval()
    fp.prune_filters(model, "features.18.0", "classifier.1", 0.5, bn="features.18.1")
    assert model.classifier[1].in_features == 640
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


# --- prune_filters / prune_resnet_blocks: refusals, model untouched ---

_REFUSALS = [
    # (model factory, call, exception, message pattern)
    (
        _mobilenet,
        lambda m: fp.prune_filters(
            m, "features.2.conv.2", "features.3.conv.0.0", 0.5, bn="features.2.conv.3"
        ),
        ValueError,
        r"features\.2\.conv\.2 output .* is added to features\.3\.conv\.3's output "
        r"by a residual add at node 'add'",
    ),
    (
        _mobilenet,
        lambda m: fp.prune_filters(
            m,
            "features.2.conv.0.0",
            "features.2.conv.1.0",
            0.5,
            bn="features.2.conv.0.1",
        ),
        ValueError,
        r"depthwise conv features\.2\.conv\.1\.0 \(groups=96\)",
    ),
    (
        _Cat,
        lambda m: fp.prune_filters(m, "a", "c", 0.5),
        ValueError,
        r"concatenated with b's output by cat at node 'cat'",
    ),
    (
        _TwoConsumers,
        lambda m: fp.prune_filters(m, "a", "b", 0.5),
        ValueError,
        r"more than one layer: \['b', 'c'\]",
    ),
    (
        _ReturnsIt,
        lambda m: fp.prune_filters(m, "a", "b", 0.5),
        ValueError,
        "returned by forward",
    ),
    (
        _Untraceable,
        lambda m: fp.prune_filters(m, "a", "b", 0.5),
        ValueError,
        "cannot be traced by torch.fx",
    ),
    (
        _HardCodedView,
        lambda m: fp.prune_filters(m, "a", "b", 0.5),
        ValueError,
        r"reshaped by 'view'.*flatten\(1\)",
    ),
    (
        _seq,
        lambda m: fp.prune_filters(m, "nope", "3", 0.5, bn="1"),
        ValueError,
        "producer 'nope' is not a submodule",
    ),
    (
        _seq,
        lambda m: fp.prune_filters(m, "0", "3", 0.5, bn="9"),
        ValueError,
        "bn '9' is not a submodule",
    ),
    (
        _seq,
        lambda m: fp.prune_filters(m, "0", "3", 0.5, bn="2"),
        TypeError,
        "BatchNorm1d or BatchNorm2d",
    ),
    (_seq, lambda m: fp.prune_filters(m, "1", "3", 0.5), TypeError, "Conv2d or Linear"),
    (_seq, lambda m: fp.prune_filters(m, "0", "3", 0.5), ValueError, "pass bn='1'"),
    (
        _seq,
        lambda m: fp.prune_filters(m, "0", "3", 1.5, bn="1"),
        ValueError,
        r"\[0, 1\)",
    ),
    (
        _seq,
        lambda m: fp.prune_filters(m, "0", "3", 0.5, bn="1", multiple_of=0),
        ValueError,
        "multiple_of",
    ),
    (
        lambda: nn.Sequential(
            nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3), nn.Conv2d(8, 4, 3)
        ),
        lambda m: fp.prune_filters(m, "0", "2", 0.5),
        ValueError,
        r"not directly connected: 0's output feeds 1",
    ),
    (
        lambda: nn.Sequential(
            nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2), nn.BatchNorm1d(2)
        ),
        lambda m: fp.prune_filters(m, "0", "2", 0.5, bn="3"),
        ValueError,
        r"bn '3' is not between 0 and 2 \(norms on that path: \['1'\]\)",
    ),
    (
        lambda: nn.Sequential(nn.Conv2d(3, 8, 3), nn.Linear(8, 2)),
        lambda m: fp.prune_filters(m, "0", "1", 0.5),
        ValueError,
        r"without flatten\(1\)",
    ),
    (
        lambda: models.CifarResNet(20),
        lambda m: fp.prune_resnet_blocks(m, {"layer9.0": 0.5}),
        ValueError,
        r"unknown; choose from \['layer1\.0'",
    ),
    (
        lambda: models.CifarResNet(20),
        lambda m: fp.prune_resnet_blocks(m, {"layer1.0": 1.0}),
        ValueError,
        r"'layer1\.0'.*\[0, 1\)",
    ),
    (
        lambda: models.CifarResNet(20),
        lambda m: fp.prune_resnet_blocks(m, 0.99),
        ValueError,
        "keep at least 1",
    ),
    (
        lambda: models.CifarResNet(20),
        lambda m: fp.prune_resnet_blocks(m, 0.5, multiple_of=-1),
        ValueError,
        "multiple_of",
    ),
    (  # ResNeXt: earlier blocks are planned, then the grouped conv2 is refused
        lambda: _tiny_bottleneck_resnet(groups=4),
        lambda m: fp.prune_resnet_blocks(m, 0.5),
        ValueError,
        r"grouped conv layer1\.0\.conv2 \(groups=4\)",
    ),
]


@pytest.mark.parametrize("make, call, exc, match", _REFUSALS)
def test_refusals_name_the_problem_and_leave_model_untouched(make, call, exc, match):
    torch.manual_seed(0)
    model = make()
    snap = _snapshot(model)
    with pytest.raises(exc, match=match):
        call(model)
    _assert_untouched(model, snap)


# --- ResNets ---


def test_bottleneck_prune_equals_two_prune_filters_calls():
    torch.manual_seed(0)
    a = _tiny_bottleneck_resnet().eval()
    b = copy.deepcopy(a)
    fp.prune_resnet_blocks(a, {"layer2.0": 0.3}, multiple_of=2)
    k1 = fp.filters_to_keep(b.layer2[0].conv1, 0.3, multiple_of=2)
    fp.prune_filters(
        b, "layer2.0.conv1", "layer2.0.conv2", 0.3, bn="layer2.0.bn1", multiple_of=2
    )
    fp.prune_filters(
        b, "layer2.0.conv2", "layer2.0.conv3", 0.3, bn="layer2.0.bn2", multiple_of=2
    )
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sb) and sa.keys() == sb.keys()
    assert len(k1) == 22 and a.layer2[0].conv3.in_channels == 22  # 32 − round(9.6)


def test_resnet50_bottlenecks():
    from torchvision.models import resnet50

    torch.manual_seed(0)
    model = resnet50(num_classes=10).eval()
    block = model.layer1[0]
    with torch.no_grad():  # make half of both inner widths (64) exactly dead
        for conv, bn in ((block.conv1, block.bn1), (block.conv2, block.bn2)):
            conv.weight[:32] = 0
            bn.weight[:32] = 0
            bn.bias[:32] = 0
    x = torch.randn(1, 3, 64, 64)
    before = model(x)
    n_params = sum(p.numel() for p in model.parameters())
    fp.prune_resnet_blocks(model, {"layer1.0": 0.5})
    assert model.layer1[0].conv1.out_channels == 32
    assert model.layer1[1].conv1.out_channels == 64  # other blocks untouched
    assert model.layer1[0].conv2.weight.shape[:2] == (32, 32)
    assert model.layer1[0].conv3.in_channels == 32
    assert torch.allclose(model(x), before, atol=1e-4)
    fp.prune_resnet_blocks(model, 0.5)
    assert model(x).shape == (1, 10)
    assert sum(p.numel() for p in model.parameters()) < 0.7 * n_params
    assert model.layer4[2].conv2.weight.shape == (256, 256, 3, 3)  # 512 → 256 → 256


def test_shipped_filter_checkpoint_matches_pruned_shapes():
    from pathlib import Path

    path = Path(__file__).parents[2] / "data" / "checkpoints" / "resnet20-filters.pt"
    if not path.exists():
        pytest.skip("checkpoint not shipped")
    model = fp.prune_resnet_blocks(models.CifarResNet(20), 0.4, multiple_of=8)
    state = torch.load(path, weights_only=True)
    model.load_state_dict(state)  # strict: every shape must match
    widths = {
        b.conv1.out_channels for b in model.modules() if isinstance(b, BasicBlock)
    }
    assert widths == {8, 16, 40}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_prune_filters_and_resnet_blocks():
    torch.manual_seed(0)
    lenet = models.LeNet5().cuda().eval()
    x = torch.randn(2, 1, 28, 28, device="cuda")
    keep = fp.filters_to_keep(lenet.conv2, 0.5)
    fp.prune_filters(lenet, "conv2", "fc1", 0.5)
    assert keep.device.type == "cuda" and lenet.fc1.weight.device.type == "cuda"
    assert lenet(x).shape == (2, 10)
    model = nn.Sequential(
        nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)
    )
    model = model.cuda().half().eval()
    fp.prune_filters(model, "0", "3", 0.5, bn="1")
    assert model[1].running_mean.device.type == "cuda"
    assert model[0].weight.dtype == torch.float16
    assert model(torch.randn(4, 6, device="cuda", dtype=torch.float16)).shape == (4, 3)
    res = fp.prune_resnet_blocks(
        models.CifarResNet(20).cuda().eval(), 0.4, multiple_of=8
    )
    assert res(torch.randn(2, 3, 32, 32, device="cuda")).shape == (2, 10)


# --- Torch-Pruning cross-check ---


def test_same_filters_and_weights_as_torch_pruning():
    """Li et al.'s L1 criterion in Torch-Pruning (DepGraph) keeps the same filters and
    gives the same pruned ResNet-20 as lwt, bit for bit."""
    tp = pytest.importorskip("torch_pruning")
    torch.manual_seed(0)
    model = models.CifarResNet(20).eval()
    ref = copy.deepcopy(model)
    graph = tp.DependencyGraph().build_dependency(ref, torch.randn(1, 3, 32, 32))
    # group_reduction="first": the L1 norm of the group's first layer, the producer's
    # filters (the default "mean" would also average in |γ| of bn1 and conv2's input
    # slices, a different criterion).
    l1 = tp.importance.MagnitudeImportance(
        p=1, group_reduction="first", normalizer=None
    )
    for name, block in ref.named_modules():
        if not isinstance(block, BasicBlock):
            continue
        n = block.conv1.out_channels
        group = graph.get_pruning_group(
            block.conv1, tp.prune_conv_out_channels, idxs=list(range(n))
        )
        layers = {dep.target.module for dep, _ in group}
        params = {m for m in layers if any(True for _ in m.parameters())}
        assert params == {block.conv1, block.bn1, block.conv2}  # the direct chain
        scores = l1(group)
        assert torch.allclose(scores, fp.l1_norms(block.conv1))
        keep = fp.filters_to_keep(model.get_submodule(name).conv1, 0.5)
        tp_keep = torch.argsort(scores, descending=True)[: len(keep)].sort().values
        assert torch.equal(tp_keep, keep), name
        drop = sorted(set(range(n)) - set(tp_keep.tolist()))
        graph.get_pruning_group(
            block.conv1, tp.prune_conv_out_channels, idxs=drop
        ).prune()
    fp.prune_resnet_blocks(model, 0.5)
    ours, theirs = model.state_dict(), ref.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), ref(x))


# --- self-contained technique files ---


def test_technique_files_depend_only_on_torch_and_each_other(tmp_path, monkeypatch):
    import ast
    import importlib
    import shutil
    import sys
    from pathlib import Path

    src = Path(fp.__file__).parent
    files = ["structured.py", "surgery.py", "neurons.py", "coupling.py", "_amounts.py"]
    allowed = {
        "torch",
        "torchvision",
        "__future__",
        "builtins",
        "operator",
        "dataclasses",
        "collections",
        "numbers",
        "functools",
    }
    for f in files:
        for node in ast.walk(ast.parse((src / f).read_text())):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert roots <= allowed, (f, roots)
    pkg = tmp_path / "isolated_pruning"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for f in files:
        shutil.copy(src / f, pkg / f)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "lwt", None)  # any `import lwt...` now fails
    mod = importlib.import_module("isolated_pruning.structured")
    m = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3)
    )
    assert mod.prune_filters(m, "0", "3", 0.5, bn="1") is m and m[0].out_channels == 4
    neurons = importlib.import_module("isolated_pruning.neurons")
    x = torch.randn(2, 3, 8, 8)
    keep = neurons.neurons_to_keep(m, [("0", "3", "1")], 0.75, batches=[x])
    neurons.prune_neurons(m, [("0", "3", "1")], 0.75, batches=[x])  # of the original 8
    assert len(keep["0"]) == 2 and m[3].in_channels == 2


def test_amount_is_a_fraction_of_the_original_width():
    """As in unstructured pruning, ``amount`` is a target of the original width: a
    second call with the same amount removes nothing more, a larger one removes up
    to it (not a fraction of what is left)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 4, 3))
    fp.prune_filters(model, "0", "2", 0.5)
    assert model[0].out_channels == 8 and fp.original_width(model[0]) == 16
    fp.prune_filters(model, "0", "2", 0.5)
    assert model[0].out_channels == 8
    fp.prune_filters(model, "0", "2", 0.75)
    assert model[0].out_channels == 4 == 16 - round(0.75 * 16)
    keep = fp.keep_after_removing(torch.arange(4.0), 0.25, original=16)
    assert keep.tolist() == [0, 1, 2, 3]  # 12 to keep, 4 left: all stay
    with pytest.raises(ValueError, match="original"):
        fp.keep_after_removing(torch.arange(4.0), 0.25, original=3)
