import copy

import pytest
import torch
from torch import nn

from lwt import models
from lwt.pruning import neurons, structured

CHAINS = [("fc1", "fc2"), ("fc2", "fc3")]


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return models.LeNet300100()


def same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_apoz_and_mean_match_a_hand_computation_linear():
    layer = nn.Linear(2, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
        layer.bias.zero_()
    model = nn.Sequential(layer, nn.ReLU(), nn.Linear(3, 1))
    x = torch.tensor([[1.0, -2.0], [-1.0, 3.0], [2.0, 2.0], [0.5, -0.5]])
    batches = [(x[:2], None), (x[2:], None)]  # two batches are summed, not averaged
    st = neurons.activation_stats(model, ["0"], batches)["0"]
    z = torch.relu(x @ layer.weight.T)
    assert st.count == 4
    assert torch.allclose(st.apoz, (z == 0).float().mean(0))
    assert torch.allclose(st.mean, z.mean(0))
    assert st.apoz.tolist() == [0.25, 0.5, 0.75]


def test_apoz_of_a_conv_channel_counts_every_position_after_bn():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    model.eval()
    x = torch.randn(5, 1, 6, 6)
    st = neurons.activation_stats(model, ["1"], [x])["1"]  # bare tensors are fine
    a = torch.relu(model[1](model[0](x)))
    assert st.count == 5 * 4 * 4
    assert torch.allclose(st.apoz, (a == 0).float().mean((0, 2, 3)))
    assert torch.allclose(st.mean, a.mean((0, 2, 3)), atol=1e-6)


def test_stats_leave_mode_and_no_hooks_behind():
    model = mlp().train()
    neurons.activation_stats(model, ["fc1"], [torch.randn(3, 1, 28, 28)])
    assert model.training and not model.fc1._forward_hooks


def test_dead_unit_with_zero_outgoing_weights_removed_without_change():
    model = mlp()
    with torch.no_grad():  # units 3 and 7 of fc1 never fire and feed nothing
        model.fc1.bias.fill_(10.0)  # every other unit fires
        model.fc1.bias[[3, 7]] = -1e3
        model.fc2.weight[:, [3, 7]] = 0
    x = torch.rand(16, 1, 28, 28)
    before = model(x)
    keep = neurons.neurons_to_keep(
        model, [("fc1", "fc2")], 2 / 300, batches=[x], criterion="apoz"
    )
    assert (
        neurons.prune_neurons(
            model, [("fc1", "fc2")], 2 / 300, batches=[x], criterion="apoz"
        )
        is model
    )
    assert 3 not in keep["fc1"] and 7 not in keep["fc1"]
    assert model.fc1.out_features == 298 and model.fc2.in_features == 298
    assert torch.allclose(model(x), before, atol=1e-5)


def test_both_layers_of_an_mlp_in_one_call_give_a_smaller_dense_net():
    model = mlp()
    x = torch.rand(32, 1, 28, 28)
    ref = copy.deepcopy(model)
    amount = {"fc1": 2 / 3, "fc2": 0.5}
    keep = neurons.neurons_to_keep(model, CHAINS, amount, batches=[x], criterion="mean")
    neurons.prune_neurons(model, CHAINS, amount, batches=[x], criterion="mean")
    assert [model.fc1.out_features, model.fc2.out_features] == [100, 50]
    assert (model.fc2.in_features, model.fc3.in_features) == (100, 50)
    # the kept weights are the originals: fc2's rows keep[fc2], columns keep[fc1]
    k1, k2 = keep["fc1"], keep["fc2"]
    assert torch.equal(model.fc2.weight, ref.fc2.weight[k2][:, k1])
    means = neurons.activation_stats(ref, ["fc1"], [x])["fc1"].mean
    assert means[k1].min() >= means[~torch.isin(torch.arange(300), k1)].max()


def test_criteria_l1_and_seeded_random():
    model = mlp()
    l1 = structured.l1_norms(model.fc1)
    assert torch.equal(neurons.importance(model.fc1, "l1"), l1)
    a = neurons.neurons_to_keep(model, CHAINS, 0.5, criterion="random")
    b = neurons.neurons_to_keep(model, CHAINS, 0.5, criterion="random")
    c = neurons.neurons_to_keep(model, CHAINS, 0.5, criterion="random", seed=1)
    assert torch.equal(a["fc1"], b["fc1"]) and not torch.equal(a["fc1"], c["fc1"])


def test_gradual_remeasures_and_retrains_each_step():
    model = mlp()
    x = torch.rand(16, 1, 28, 28)
    seen = []

    def retrain(m: nn.Module) -> None:
        seen.append((m.fc1.out_features, m.fc2.out_features))

    history = neurons.gradual_prune_neurons(
        model, CHAINS, [0.2, {"fc1": 0.5, "fc2": 0.3}, 0.6],
        batches=[x], retrain=retrain,
    )  # fmt: skip
    assert seen == [(240, 80), (150, 70), (120, 40)]
    assert history == [{"fc1": a, "fc2": b} for a, b in seen]
    with pytest.raises(ValueError, match="regrows fc1"):
        neurons.gradual_prune_neurons(
            mlp(), CHAINS, [0.5, 0.3], batches=[x], retrain=retrain
        )


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"criterion": "magic"}, ValueError, "criterion must be one of"),
        ({"amount": 1.0}, ValueError, r"\[0, 1\)"),
        ({"amount": {"fc9": 0.5}}, ValueError, "unknown"),
        ({"chains": [("fc1", "fc3")]}, ValueError, "not directly connected"),
        ({"chains": [("fcX", "fc2")]}, ValueError, "not a submodule"),
        ({"chains": ["fc1"]}, TypeError, "producer, consumer"),
        ({"batches": None}, ValueError, "needs calibration batches"),
        ({"batches": []}, ValueError, "no examples"),
    ],
)
def test_bad_input_leaves_model_untouched(kwargs, err, match):
    model = mlp()
    ref = copy.deepcopy(model)
    args = {"chains": CHAINS, "amount": 0.5, "batches": [torch.rand(4, 1, 28, 28)]}
    args.update(kwargs)
    with pytest.raises(err, match=match):
        neurons.prune_neurons(model, args.pop("chains"), args.pop("amount"), **args)
    assert same_state(model, ref)


def test_prune_channels_checks_every_chain_before_changing():
    model = mlp()
    ref = copy.deepcopy(model)
    good = ("fc1", "fc2", None, torch.arange(10))
    with pytest.raises(ValueError, match="distinct"):
        structured.prune_channels(
            model, [good, ("fc2", "fc3", None, torch.tensor([1, 1]))]
        )
    assert same_state(model, ref)


def test_prune_neurons_amount_is_of_the_original_units_and_returns_the_model():
    model = mlp()
    x = torch.rand(8, 1, 28, 28)
    assert neurons.prune_neurons(model, CHAINS[:1], 0.5, criterion="l1") is model
    assert model.fc1.out_features == 150
    neurons.prune_neurons(model, CHAINS[:1], 0.6, batches=[x], criterion="mean")
    assert model.fc1.out_features == 300 - round(0.6 * 300)
