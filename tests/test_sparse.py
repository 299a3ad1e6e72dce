import torch
from torch import nn

from lwt import pruning, sparse
from lwt.measure import serialized_bytes


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
