"""The package's one vocabulary: in-place functions return the model they changed;
functions that build a new model leave the caller's untouched (``lwt/__init__.py``)."""

import copy

import pytest
import torch
from torch import nn

from lwt import combine, lowrank, models, pruning, quantization, sharing, transfer


def small() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 10),
    )  # fmt: skip


def resnet() -> nn.Module:
    torch.manual_seed(0)
    return models.create_model("resnet20").eval()


X = [torch.randn(4, 3, 8, 8)]

IN_PLACE = {
    "magnitude_prune": (small, lambda m: pruning.magnitude_prune(m, 0.5)),
    "han_prune": (small, lambda m: pruning.han_prune(m, 0.5)),
    "global_magnitude_prune": (small, lambda m: pruning.global_magnitude_prune(m, 0.5)),
    "make_permanent": (small, lambda m: pruning.make_permanent(m)),
    "iterative_prune": (small, lambda m: pruning.iterative_prune(
        m, [0.5], retrain=lambda _: None)),
    "prune_filters": (small, lambda m: pruning.prune_filters(m, "0", "3", 0.5, bn="1")),
    "prune_neurons": (small, lambda m: pruning.prune_neurons(
        m, [("0", "3", "1")], 0.5, criterion="l1")),
    "prune_resnet_blocks": (resnet, lambda m: pruning.prune_resnet_blocks(m, 0.5)),
    "drop_blocks": (resnet, lambda m: pruning.drop_blocks(m, ["layer1.1"])),
    "factorize": (small, lambda m: lowrank.factorize(m, ratio=2.0, layers=["3"])),
    "share_weights": (small, lambda m: sharing.share_weights(m, 3)),
    "to_crelu": (resnet, lambda m: transfer.to_crelu(m, ["conv1"])),
}  # fmt: skip

COPIES = {
    "quantize_model": lambda m: quantization.quantize_model(m),
    "fold_batchnorm": lambda m: quantization.fold_batchnorm(m),
    "to_float": lambda m: quantization.to_float(quantization.quantize_model(m)),
    "to_bfloat16": lambda m: quantization.to_bfloat16(m),
    "shared_copy": lambda m: sharing.shared_copy(m, 3),
    "compress": lambda m: combine.compress(
        m, [(torch.randn(4, 3, 32, 32), torch.arange(4))], amount=0.5, epochs=1,
        qat_epochs=0, calibration_batches=1, quiet=True),
}  # fmt: skip


@pytest.mark.parametrize("name", IN_PLACE)
def test_in_place_functions_return_the_model_they_changed(name):
    make, fn = IN_PLACE[name]
    model = make()
    before = copy.deepcopy(model.state_dict())
    assert fn(model) is model, name
    after = model.state_dict()
    changed = before.keys() != after.keys() or any(
        not torch.equal(before[k], after[k]) for k in before
    )
    assert changed or name == "make_permanent", f"{name} changed nothing"


@pytest.mark.parametrize("name", COPIES)
def test_functions_that_build_a_model_leave_the_callers_alone(name):
    model = resnet() if name == "compress" else small().eval()
    before = copy.deepcopy(model.state_dict())
    kinds = [type(m) for m in model.modules()]
    out = COPIES[name](model)
    assert out is not model
    assert [type(m) for m in model.modules()] == kinds
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), name
