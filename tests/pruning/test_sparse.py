import torch
from torch import nn

from lwt import pruning
from lwt.measure import serialized_bytes
from lwt.pruning import sparse


def test_sparse_format_roundtrip_is_exact_in_value_and_small():
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


def test_pruned_negative_weights_are_minus_zero_in_the_model_plus_zero_in_the_file():
    """``weight_orig * mask`` gives −0.0 where a negative weight is pruned; the file
    stores no sign for a zero, so it reads back +0.0: equal in value (``torch.equal``
    and ``==`` say so), different in the sign bit, as the docstrings state."""
    layer = nn.Linear(4, 2)
    with torch.no_grad():
        layer.weight.copy_(-torch.arange(1.0, 9.0).view(2, 4))
    pruning.magnitude_prune(layer, 0.5)
    w = layer.weight.detach()
    assert torch.signbit(w[w == 0]).all()  # −0.0 in the model
    fresh = nn.Linear(4, 2)
    sparse.load_sparse(sparse.sparse_bytes(layer, min_sparsity=0.5), fresh)
    back = fresh.weight.detach()
    assert torch.equal(back, w) and not torch.signbit(back[back == 0]).any()
