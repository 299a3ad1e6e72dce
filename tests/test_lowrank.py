"""lwt.lowrank: SVD / Tucker-2 / CP factorization, rank rules, counts, layer-wise."""

import ast
import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lwt import lowrank as lr

FILE = Path(lr.__file__)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny layers: one thread is faster, and immune to a busy machine's other jobs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def snapshot(model: nn.Module) -> tuple:
    types = [(n, type(m)) for n, m in model.named_modules()]
    return types, {k: v.clone() for k, v in model.state_dict().items()}


def assert_same(model: nn.Module, snap: tuple) -> None:
    types, state = snap
    assert [(n, type(m)) for n, m in model.named_modules()] == types
    now = model.state_dict()
    assert now.keys() == state.keys()
    assert all(torch.equal(now[k], v) for k, v in state.items())


def test_imports_only_torch_tensorly_stdlib():
    allowed = {"torch", "tensorly", "__future__"} | set(sys.stdlib_module_names)
    for node in ast.walk(ast.parse(FILE.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports"
            names = [node.module]
        else:
            continue
        assert all(n.split(".")[0] in allowed for n in names), names


def test_svd_full_rank_exact_and_structure():
    torch.manual_seed(0)
    layer = nn.Linear(12, 7).double()
    seq = lr.svd_linear(layer, 7)
    assert [type(m) for m in seq] == [nn.Linear, nn.Linear]
    assert seq[0].bias is None and seq[0].weight.shape == (7, 12)
    assert seq[0].weight.dtype == torch.float64
    x = torch.randn(5, 12, dtype=torch.float64)
    assert torch.allclose(seq(x), layer(x), atol=1e-12)
    assert lr.reconstruction_error(layer, seq) < 1e-12
    # truncation error = energy of the dropped singular values (Eckart–Young)
    s = torch.linalg.svdvals(layer.weight.detach())
    err = lr.reconstruction_error(layer, lr.svd_linear(layer, 3))
    assert err == pytest.approx(float(s[3:].norm() / s.norm()), rel=1e-9)


@pytest.mark.parametrize("method", ["hosvd", "hooi"])
@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2),
        nn.Conv2d(5, 3, (3, 2), padding=1, padding_mode="reflect", bias=False),
        nn.Conv2d(6, 3, 1),
    ],
)
def test_tucker2_full_rank_reproduces_conv(conv, method):
    if method == "hooi":
        pytest.importorskip("tensorly")
    torch.manual_seed(0)
    conv.reset_parameters()
    seq = lr.tucker2_conv(conv, (conv.in_channels, conv.out_channels), method=method)
    core = seq[1]
    assert (core.stride, core.padding, core.dilation) == (
        conv.stride,
        conv.padding,
        conv.dilation,
    )
    assert seq[0].kernel_size == seq[2].kernel_size == (1, 1)
    assert seq[0].bias is None and core.bias is None
    x = torch.randn(2, conv.in_channels, 11, 9)
    assert torch.allclose(seq(x), conv(x), atol=1e-5)


def test_hand_hosvd_equals_tucker2_factors():
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 8, 3, padding=1)
    W = conv.weight.detach().double()
    ranks = (3, 4)
    u_t = torch.linalg.svd(W.reshape(8, -1), full_matrices=False)[0][:, : ranks[1]]
    u_s = torch.linalg.svd(W.permute(1, 0, 2, 3).reshape(5, -1), full_matrices=False)[
        0
    ][:, : ranks[0]]
    core = torch.einsum("tsuv,to,si->oiuv", W, u_t, u_s)
    seq = lr.tucker2_conv(conv, ranks)
    got_s = seq[0].weight.detach().double()[:, :, 0, 0].T
    got_t = seq[2].weight.detach().double()[:, :, 0, 0]
    sign_s = torch.sign((got_s * u_s).sum(0))
    sign_t = torch.sign((got_t * u_t).sum(0))
    assert torch.allclose(got_s, u_s * sign_s, atol=1e-6)
    assert torch.allclose(got_t, u_t * sign_t, atol=1e-6)
    signed = core * sign_t[:, None, None, None] * sign_s[None, :, None, None]
    assert torch.allclose(seq[1].weight.detach().double(), signed, atol=1e-6)


def test_hooi_no_worse_than_hosvd():
    pytest.importorskip("tensorly")
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 10, 3)
    e_hosvd = lr.reconstruction_error(conv, lr.tucker2_conv(conv, (3, 4)))
    e_hooi = lr.reconstruction_error(conv, lr.tucker2_conv(conv, (3, 4), method="hooi"))
    assert e_hooi <= e_hosvd + 1e-9 and e_hooi < 1


def test_cp_recovers_exactly_low_rank_kernel():
    pytest.importorskip("tensorly")
    g = torch.Generator().manual_seed(1)
    T, S, R = 6, 5, 3
    a, b, c, d = (torch.randn(n, R, generator=g) for n in (T, S, 3, 3))
    conv = nn.Conv2d(S, T, 3, stride=2, padding=2, dilation=2)
    with torch.no_grad():
        conv.weight.copy_(torch.einsum("tr,sr,ur,vr->tsuv", a, b, c, d))
    seq = lr.cp_conv(conv, R)
    assert [m.groups for m in seq] == [1, R, R, 1]
    assert seq[1].kernel_size == (3, 1) and seq[2].kernel_size == (1, 3)
    assert seq[1].stride == (2, 1) and seq[2].stride == (1, 2)
    assert seq[1].padding == (2, 0) and seq[2].padding == (0, 2)
    assert seq[1].dilation == (2, 1) and seq[2].dilation == (1, 2)
    x = torch.randn(2, S, 9, 9, generator=g)
    with torch.no_grad():
        want = conv(x)
        assert float((seq(x) - want).norm() / want.norm()) < 1e-3
    assert lr.reconstruction_error(conv, seq) < 1e-3


def measured_macs(module: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops() // 2


@pytest.mark.parametrize(
    "layer, rank, method, x",
    [
        (nn.Linear(20, 12), 5, "svd", torch.randn(1, 20)),
        (nn.Linear(20, 12, bias=False), 5, "auto", torch.randn(1, 20)),
        (
            nn.Conv2d(6, 8, 3, stride=2, padding=1),
            (3, 4),
            "tucker2",
            torch.randn(1, 6, 9, 9),
        ),
        (
            nn.Conv2d(6, 8, 3, padding=1, bias=False),
            (3, 4),
            "auto",
            torch.randn(1, 6, 8, 8),
        ),
        (
            nn.Conv2d(6, 8, (3, 5), stride=2, padding=2),
            4,
            "cp",
            torch.randn(1, 6, 9, 9),
        ),
    ],
)
def test_param_and_mac_formulas(layer, rank, method, x):
    if method == "cp":
        pytest.importorskip("tensorly")
    kind = lr._kind(layer, method)
    seq = lr._build(layer, kind, rank)
    assert lr.factored_params(layer, rank, method=method) == sum(
        p.numel() for p in seq.parameters()
    )
    out_hw = None if isinstance(layer, nn.Linear) else tuple(layer(x).shape[2:])
    macs = lr.factored_macs(layer, rank, method=method, out_hw=out_hw)
    assert macs == measured_macs(seq, x)


def test_energy_rank_known_answer():
    m = torch.diag(torch.tensor([3.0, 2.0, 1.0]))  # energies 9, 4, 1 of 14
    assert lr.energy_rank(m, 0.5) == 1
    assert lr.energy_rank(m, 9 / 14) == 1  # exactly reached: no rounding up
    assert lr.energy_rank(m, 9 / 14 + 1e-6) == 2
    assert lr.energy_rank(m, 13 / 14) == 2
    assert lr.energy_rank(m, 0.9) == 2
    assert lr.energy_rank(m, 1.0) == 3
    with pytest.raises(ValueError):
        lr.energy_rank(m, 0.0)


def test_rank_for_ratio_and_breakeven():
    lin = nn.Linear(100, 50)  # 5050 params
    r = lr.rank_for_ratio(lin, 4.0, method="svd")
    assert lr.factored_params(lin, r) <= 5050 / 4 < lr.factored_params(lin, r + 1)
    conv = nn.Conv2d(16, 32, 3)
    budget = sum(p.numel() for p in conv.parameters()) / 3
    r_in, r_out = lr.rank_for_ratio(conv, 3.0, method="tucker2")
    assert lr.factored_params(conv, (r_in, r_out)) <= budget
    assert abs(r_in / 16 - r_out / 32) <= 1 / 16  # proportional to S, T
    assert lr.factored_params(conv, (r_in + 1, min(32, r_out + 2))) > budget
    rc = lr.rank_for_ratio(conv, 3.0, method="cp")
    assert lr.factored_params(conv, rc, method="cp") <= budget
    assert lr.factored_params(conv, rc + 1, method="cp") > budget
    assert lr.breakeven_rank_1x1(64, 64) == 32.0
    with pytest.raises(ValueError):
        lr.rank_for_ratio(lin, 1.0)


def tiny_mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 24), nn.ReLU(), nn.Linear(24, 5)
    )


def tiny_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=2),
        nn.ReLU(),
        nn.Conv2d(8, 12, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(12, 12, 1),
        nn.Flatten(),
        nn.Linear(12 * 16, 4),
    )


def test_factorize_replaces_every_default_layer():
    model = tiny_cnn().eval()
    x = torch.randn(2, 3, 8, 8)
    before = model(x)
    lr.factorize(model, energy=1.0)
    # default: Linears and non-1×1 groups=1 convs; grouped and 1×1 left alone
    assert isinstance(model[0], nn.Sequential) and isinstance(model[5], nn.Sequential)
    assert isinstance(model[9], nn.Sequential)
    assert type(model[3]) is nn.Conv2d and type(model[7]) is nn.Conv2d
    assert torch.allclose(model(x), before, atol=1e-5)
    model = tiny_mlp()
    lr.factorize(model, ratio=2.0, layers=["2"])
    assert isinstance(model[2], nn.Sequential) and type(model[0]) is nn.Linear


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(ranks={"nope": 2}), ValueError, "factorizable"),
        (dict(ranks={"0": 2, "2": 25}), ValueError, r"\[1, 24\]"),
        (dict(ranks={"0": 0}), ValueError, r"\[1, 16\]"),
        (dict(ranks={"0": 2}, ratio=2.0), ValueError, "exactly one"),
        (dict(), ValueError, "exactly one"),
        (dict(ratio=0.5), ValueError, "ratio"),
        (dict(energy=1.5), ValueError, "energy"),
        (dict(ranks={"0": 2}, method="bogus"), ValueError, "method"),
        (dict(ranks={"0": (2, 2)}), TypeError, "int"),
    ],
)
def test_factorize_bad_inputs_leave_mlp_untouched(kwargs, error, match):
    model = tiny_mlp()
    snap = snapshot(model)
    with pytest.raises(error, match=match):
        lr.factorize(model, **kwargs)
    assert_same(model, snap)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(ranks={"0": (2, 4), "3": 2}), TypeError, "groups"),
        (dict(ranks={"0": (2, 4), "5": (9, 4)}), ValueError, r"\[1, 8\] × \[1, 12\]"),
        (dict(ranks={"1": 2}), ValueError, "factorizable"),
        (dict(energy=0.9, method="cp"), ValueError, "CP"),
        (dict(ranks={"0": 2, "9": 3}, method="svd"), TypeError, "svd"),
    ],
)
def test_factorize_bad_inputs_leave_cnn_untouched(kwargs, error, match):
    model = tiny_cnn()
    snap = snapshot(model)
    with pytest.raises(error, match=match):
        lr.factorize(model, **kwargs)
    assert_same(model, snap)


def output_mse(model: nn.Module, reference: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float(nn.functional.mse_loss(model(x), reference(x)))


@pytest.mark.parametrize(
    "make, shape, ranks",
    [
        (tiny_mlp, (32, 16), {"0": 4, "2": 4}),
        (tiny_cnn, (16, 3, 8, 8), {"0": (2, 3), "5": (3, 4)}),
    ],
)
def test_layerwise_beats_plain_factorize(make, shape, ranks):
    original = make().eval()
    torch.manual_seed(1)
    batches = [torch.randn(shape) for _ in range(4)]
    test_x = torch.randn(shape)
    plain = lr.factorize(copy.deepcopy(original), dict(ranks))
    model = copy.deepcopy(original)
    model[-1].bias.requires_grad_(False)
    torch.manual_seed(2)
    lr.layerwise_factorize(model, dict(ranks), batches, steps=60, lr=3e-3)
    for name in ranks:
        assert isinstance(model.get_submodule(name), nn.Sequential)
    assert output_mse(model, original, test_x) < output_mse(plain, original, test_x)
    trainable = {n: p.requires_grad for n, p in model.named_parameters()}
    assert trainable.pop(f"{len(model) - 1}.bias") is False
    assert all(trainable.values())
    assert all(p.grad is None for p in model.parameters())
    assert not model.training


def test_layerwise_target_and_pairs_and_errors():
    original = tiny_mlp()
    model = copy.deepcopy(original).train()
    batches = [(torch.randn(8, 16), torch.zeros(8)) for _ in range(2)]
    lr.layerwise_factorize(model, {"0": 3}, batches, steps=5, target="3")
    assert model.training and model[0].training
    model = copy.deepcopy(original)
    snap = snapshot(model)
    with pytest.raises(ValueError, match="target"):
        lr.layerwise_factorize(model, {"0": 3}, batches, target="zz")
    with pytest.raises(ValueError, match="factorizable"):
        lr.layerwise_factorize(model, {"7": 3}, batches)
    assert_same(model, snap)


def test_decomposition_seconds_and_device_dtype():
    conv = nn.Conv2d(4, 6, 3).double()
    assert lr.decomposition_seconds(conv, (2, 3), method="tucker2") >= 0
    seq = lr.tucker2_conv(conv, (2, 3))
    assert all(m.weight.dtype == torch.float64 for m in seq)
    assert all(m.weight.device == conv.weight.device for m in seq)


def test_file_alone_imports_and_works_without_tensorly(tmp_path):
    (tmp_path / "lowrank.py").write_text(FILE.read_text())
    code = (
        "import sys; sys.modules['tensorly'] = None\n"  # as if not installed
        "import torch, lowrank\n"
        "conv = torch.nn.Conv2d(3, 4, 3)\n"
        "assert lowrank.reconstruction_error(conv, lowrank.tucker2_conv(conv, (3, 4)))"
        " < 1e-6\n"
        "try:\n    lowrank.cp_conv(conv, 2)\nexcept ImportError:\n    print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_tensorly_backend_restored_and_other_methods_in_factorize():
    tl = pytest.importorskip("tensorly")
    before = tl.get_backend()
    for method, ranks in [("tucker2-hooi", {"0": (2, 4)}), ("cp", {"0": 4, "5": 6})]:
        model = tiny_cnn()
        lr.factorize(model, ranks, method=method)
        assert [len(model.get_submodule(n)) for n in ranks] == [
            4 if method == "cp" else 3
        ] * len(ranks)
        assert tl.get_backend() == before
    model = tiny_cnn()
    lr.factorize(model, ratio=2.0, method="cp")
    assert len(model[0]) == 4 and len(model[9]) == 2
    total = sum(p.numel() for p in model.parameters())
    assert total < sum(p.numel() for p in tiny_cnn().parameters())


def test_layerwise_task_loss_fits_the_labels_and_reports_each_layer():
    """loss='task': the later layers train on the labels (cross-entropy), not on the
    original's outputs; after_layer sees every layer once, in forward order."""
    torch.manual_seed(0)
    original = nn.Sequential(nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(),
                             nn.Linear(12, 4)).eval()  # fmt: skip
    x = torch.randn(64, 16)
    y = torch.randint(0, 4, (64,))
    batches = [(x, y)]
    seen = []
    model = lr.layerwise_factorize(
        copy.deepcopy(original), {"2": 3, "0": 4}, batches, steps=200, lr=1e-2,
        loss="task", after_layer=lambda name, m: seen.append((name, m.training)),
    )  # fmt: skip
    assert seen == [("0", False), ("2", False)]
    ce = lambda m: nn.functional.cross_entropy(m(x), y).item()  # noqa: E731
    fit = lr.layerwise_factorize(copy.deepcopy(original), {"2": 3, "0": 4}, batches,
                                 steps=200, lr=1e-2)  # reconstruction  # fmt: skip
    assert ce(model) < ce(fit) and ce(model) < ce(original)


def test_layerwise_refuses_a_task_loss_without_labels_before_changing_anything():
    model = tiny_mlp()
    snap = snapshot(model)
    with pytest.raises(ValueError, match="loss must be"):
        lr.layerwise_factorize(model, {"0": 3}, [torch.randn(8, 16)], loss="mse")
    with pytest.raises(ValueError, match=r"needs \(x, y\) batches"):
        lr.layerwise_factorize(model, {"0": 3}, [torch.randn(8, 16)], loss="task")
    labels = torch.zeros(8, dtype=torch.long)
    with pytest.raises(ValueError, match="target=None"):
        lr.layerwise_factorize(model, {"0": 3}, [(torch.randn(8, 16), labels)],
                               loss="task", target="3")  # fmt: skip
    for bad in (torch.zeros(8), labels[:4], labels.view(8, 1), labels + 5, labels - 1):
        with pytest.raises(ValueError, match="batches"):
            lr.layerwise_factorize(model, {"0": 3, "2": 3}, [(torch.randn(8, 16), bad)],
                                   loss="task")  # fmt: skip
    assert_same(model, snap)
