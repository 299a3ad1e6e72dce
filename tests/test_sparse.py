import torch
from torch import nn

from lwt import pruning
from lwt.measure import serialized_bytes
from lwt.pruning import sparse


def test_sparse_format_roundtrip_is_bit_exact_and_small():
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3),
        nn.BatchNorm2d(16),
        nn.Flatten(),
        nn.Linear(16 * 6 * 6, 100),
    )
    model[1].running_mean.uniform_()
    pruning.magnitude_prune(model, 0.9)
    payload = sparse.sparse_bytes(model)
    fresh = nn.Sequential(
        nn.Conv2d(3, 16, 3),
        nn.BatchNorm2d(16),
        nn.Flatten(),
        nn.Linear(16 * 6 * 6, 100),
    )
    sparse.load_sparse(payload, fresh)
    pruning.make_permanent(model)
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    assert len(payload) < serialized_bytes(model) / 4


def test_pruned_bias_and_weight_are_both_folded_correctly():
    torch.manual_seed(0)
    layer = nn.Linear(8, 8)
    torch.nn.utils.prune.l1_unstructured(layer, "weight", amount=0.75)
    torch.nn.utils.prune.l1_unstructured(layer, "bias", amount=0.75)
    expected = {
        "weight": layer.weight.detach().clone(),
        "bias": layer.bias.detach().clone(),
    }
    fresh = sparse.load_sparse(sparse.sparse_bytes(layer), nn.Linear(8, 8))
    for name, value in expected.items():
        assert torch.equal(getattr(fresh, name), value), name
