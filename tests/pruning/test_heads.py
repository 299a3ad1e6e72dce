"""Attention-head pruning on the course's compact transformer: removal for real, zeroed
heads removed without changing the outputs, importance by gradient of a gate."""

import pytest
import torch

from lwt import models, pruning


def cct():
    torch.manual_seed(0)
    return models.create_model("cct4").eval()


def test_removing_zeroed_heads_leaves_the_outputs_unchanged():
    model = cct()
    attn = model.blocks[1].attn
    h, d = attn.heads, attn.head_dim
    with torch.no_grad():  # head 2's values are zero: it contributes nothing
        attn.qkv.weight[2 * h * d + 2 * d : 2 * h * d + 3 * d] = 0
        attn.qkv.bias[2 * h * d + 2 * d : 2 * h * d + 3 * d] = 0
    x = torch.randn(3, 3, 32, 32)
    before = model(x)
    assert pruning.prune_heads(model, {"blocks.1.attn": [0, 1, 3]}) is model
    assert attn.heads == 3 and attn.qkv.out_features == 3 * 3 * d
    assert attn.proj.in_features == 3 * d
    assert torch.allclose(model(x), before, atol=1e-5)
    params = sum(p.numel() for p in model.parameters())
    assert (
        params == 483_659 - (128 * 3 * d + 3 * d) - 128 * d
    )  # qkv rows + bias, proj cols


def test_pruning_every_head_or_a_bad_path_is_refused_and_changes_nothing():
    model = cct()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="at least one"):
        pruning.prune_heads(model, {"blocks.0.attn": []})
    with pytest.raises(ValueError, match="not attention modules"):
        pruning.prune_heads(model, {"blocks.0.mlp": [0]})
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        pruning.prune_heads(model, {"blocks.0.attn": [0], "blocks.1.attn": [4]})
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_a_head_that_cannot_change_the_output_has_zero_importance():
    model = cct()
    attn = model.blocks[0].attn
    with torch.no_grad():
        attn.proj.weight[:, : attn.head_dim] = 0  # head 0 never reaches the output
    batches = [
        (torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))) for _ in range(2)
    ]
    scores = pruning.head_importance(model, batches)
    assert set(scores) == {f"blocks.{i}.attn" for i in range(4)}
    assert scores["blocks.0.attn"][0] == 0 and (scores["blocks.0.attn"][1:] > 0).all()
    assert not model.training and attn.proj.weight.grad is None


def test_heads_to_keep_removes_the_globally_least_important_and_keeps_one_per_layer():
    from lwt.pruning import heads_to_keep

    scores = {
        "a": torch.tensor([3.0, 4.0, 0.0, 0.0]),  # norm 5: 0.6, 0.8, 0, 0
        "b": torch.tensor([1.0, 0.0, 0.0, 0.0]),  # norm 1: 1, 0, 0, 0
    }
    assert heads_to_keep(scores, 0.25) == {"a": [0, 1], "b": [0, 1, 2, 3]}
    assert heads_to_keep(scores, 0.5) == {"a": [0, 1], "b": [0, 3]}
    # never the last head of a layer, even when its importance is lowest
    assert heads_to_keep({"a": torch.zeros(2), "b": torch.ones(2)}, 0.5) == {
        "a": [1],
        "b": [1],
    }
    with pytest.raises(ValueError, match="one head per layer"):  # not silently fewer
        heads_to_keep({"a": torch.zeros(2), "b": torch.ones(2)}, 0.75)
    with pytest.raises(ValueError, match="empty"):
        heads_to_keep({}, 0.5)
    # without normalisation, raw scores rank across layers
    assert heads_to_keep(scores, 0.625, normalize=False) == {"a": [0, 1], "b": [0]}
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="amount"):
            heads_to_keep(scores, bad)
