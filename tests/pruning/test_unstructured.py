import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from lwt import pruning, train


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, 50), nn.ReLU(), nn.Linear(50, 10))


def kept(model):
    return {r["layer"]: r["kept"] for r in pruning.sparsity_report(model)}


def test_exact_sparsity_per_layer():
    model = pruning.magnitude_prune(mlp(), {"0": 0.9, "2": 0.3})
    assert kept(model) == {"0": 0.1, "2": 0.7, "total": (100 + 350) / 1500}
    assert prune.is_pruned(model[0]) and hasattr(model[0], "weight_orig")
    # the smallest |w| went: every pruned weight is <= every kept one
    w, mask = model[0].weight_orig.detach().abs(), model[0].weight_mask.bool()
    assert w[~mask].max() <= w[mask].min()


def test_repruning_is_a_target_and_never_regrows():
    model = pruning.magnitude_prune(mlp(), 0.5)
    pruning.magnitude_prune(model, 0.8)
    assert kept(model)["total"] == pytest.approx(0.2)
    pruning.magnitude_prune(model, 0.3)  # below current sparsity: nothing comes back
    assert kept(model)["total"] == pytest.approx(0.2)


def test_han_threshold():
    model = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.1, -0.2, 1.0, -2.0]]))
    std = model.weight.detach().std()  # 1.0155
    pruning.han_prune(model, 1.0) if False else pruning.han_prune(
        nn.Sequential(model), 1.0
    )
    assert torch.equal(model.weight_mask, (model.weight_orig.abs() >= std).float())
    assert model.weight_mask.tolist() == [[0.0, 0.0, 0.0, 1.0]]


def test_global_threshold_reaches_total_sparsity():
    model = pruning.global_magnitude_prune(mlp(), 0.75)
    assert kept(model)["total"] == pytest.approx(0.25, abs=1 / 1500)
    assert kept(model)["0"] != kept(model)["2"]  # one threshold, different layer rates


def test_make_permanent_keeps_zeros_and_drops_hooks():
    model = pruning.make_permanent(pruning.magnitude_prune(mlp(), 0.6))
    assert not any(prune.is_pruned(m) for m in model)
    assert sorted(model.state_dict()) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    assert kept(model)["total"] == pytest.approx(0.4)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        pruning.magnitude_prune(mlp(), 1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        pruning.magnitude_prune(mlp(), {"0": -0.1})
    with pytest.raises(ValueError, match="not conv/linear"):
        pruning.magnitude_prune(mlp(), {"1": 0.5})
    with pytest.raises(TypeError, match="Conv2d/Linear"):
        pruning.set_mask(nn.BatchNorm2d(3), torch.ones(3))
    with pytest.raises(ValueError, match="frequency"):
        pruning.zhu_gupta_sparsity(0, 0.5, 0, 0, 1)
    with pytest.raises(ValueError, match="quality"):
        pruning.han_prune(mlp(), {"0": -1.0})


def test_zhu_gupta_values():
    s = [
        pruning.zhu_gupta_sparsity(t, 0.9, 100, 10, 10, 0.1)
        for t in (0, 100, 150, 200, 500)
    ]
    assert s == pytest.approx([0.1, 0.1, 0.9 - 0.8 * 0.5**3, 0.9, 0.9])


def test_gradual_pruning_callback_in_train_loop():
    torch.manual_seed(0)
    x, y = torch.randn(64, 20), torch.randint(0, 10, (64,))
    batches = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 64, 8)]  # 8 steps/epoch
    model = mlp()
    cb = pruning.GradualPruning(amount=0.8, begin=2, frequency=4, n_prunes=5)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    train.train(model, batches, 3, opt, callback=cb, device="cpu", quiet=True)
    assert [s for s, _ in cb.history] == [2, 6, 10, 14, 18, 22]
    assert cb.history[-1][1] == pytest.approx(0.8)
    assert kept(model)["total"] == pytest.approx(0.2, abs=1e-3)


def test_iterative_prune_keeps_pruned_weights_zero():
    torch.manual_seed(0)
    batches = [(torch.randn(16, 20), torch.randint(0, 10, (16,))) for _ in range(4)]
    model = mlp()
    seen = []

    def retrain(m):
        seen.append(kept(m)["total"])
        train.finetune(m, batches, epochs=2, lr=0.01)
        assert torch.equal(m[0].weight == 0, m[0].weight_mask == 0)

    assert pruning.iterative_prune(model, [0.5, 0.7], retrain=retrain) is model
    assert seen == pytest.approx([0.5, 0.3])  # retrained after each step's target
    assert kept(model)["total"] == pytest.approx(0.3)
    assert torch.equal(model[0].weight == 0, model[0].weight_mask == 0)


def test_sensitivity_scan_and_rule():
    torch.manual_seed(0)
    batches = [(torch.randn(32, 20), torch.randint(0, 10, (32,)))]
    model = mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scan = pruning.sensitivity_scan(
        model, [0.0, 0.5, 0.9], evaluate=lambda m: train.evaluate(m, batches)
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert set(scan) == {"0", "2"} and all(len(v) == 3 for v in scan.values())
    rule = pruning.amounts_from_scan(
        {"a": [0.9, 0.89, 0.5], "b": [0.9, 0.7, 0.6]},
        [0.0, 0.5, 0.9],
        baseline=0.9,
        max_drop=0.02,
    )
    assert rule == {"a": 0.5, "b": 0.0}


def test_global_magnitude_prune_prunes_exactly_k_even_with_ties():
    """Issue 29: ties at the threshold (normal after sharing or quantization) were all
    pruned: 100 equal weights at amount 0.5 kept none."""
    m = nn.Sequential(nn.Linear(10, 10, bias=False))
    with torch.no_grad():
        m[0].weight.fill_(0.5)
    pruning.global_magnitude_prune(m, 0.5)
    assert int(torch.count_nonzero(m[0].weight)) == 50
    two = nn.Sequential(nn.Linear(4, 5, bias=False), nn.Linear(5, 4, bias=False))
    with torch.no_grad():
        two[0].weight.fill_(1.0)
        two[1].weight.fill_(1.0)
        two[1].weight[0, :3] = 0.1  # the three smallest go first
    pruning.global_magnitude_prune(two, 0.25)  # 10 of 40
    assert int(torch.count_nonzero(two[0].weight)) + int(
        torch.count_nonzero(two[1].weight)) == 30  # fmt: skip
    assert int(torch.count_nonzero(two[1].weight[0, :3])) == 0


def test_han_prune_refuses_a_layer_without_a_std_and_changes_nothing():
    m = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        m[1].weight.zero_()
        m[1].weight[0, 0] = 1.0  # one survivor: std undefined (NaN)
    before = [p.clone() for p in m.parameters()]
    with pytest.raises(ValueError, match="'1'.*1 nonzero"):
        pruning.han_prune(m, 1.0)
    assert not any(hasattr(x, "weight_mask") for x in m)  # untouched
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters(), strict=True))


def test_gradual_pruning_checks_its_targets_when_made():
    """Issue 29: {} failed inside training with "max() arg is an empty sequence"."""
    with pytest.raises(ValueError, match="empty dict"):
        pruning.GradualPruning({}, begin=0, frequency=1, n_prunes=2)
    with pytest.raises(ValueError, match="amount"):
        pruning.GradualPruning({"0": 1.5}, begin=0, frequency=1, n_prunes=2)
    with pytest.raises(TypeError, match="amount"):
        pruning.GradualPruning("0.5", begin=0, frequency=1, n_prunes=2)
