"""Checks of notebook 03 (low rank): splitting a ``Linear`` layer by truncated SVD, and
layer-wise factorization with fine-tuning of the layers above.

Rules the check enforces (and the notebook states):
``first = Linear(in, r, bias=False)``
with weight ``√Σ_r V_rᵀ``, ``second = Linear(r, out)`` with weight ``U_r √Σ_r`` and the
original bias (none if the layer has none); the layer itself is left untouched. Singular
vectors may differ in sign, so the factors are compared through their row norms (√σ)
and the product.

``my_layerwise(model, ranks, batches, steps, lr)`` (Denton et al. 2014's procedure):
keep a frozen copy of the original; in forward order, replace each layer of ``ranks``
by its SVD split (whose factors then stay fixed) and train the parameters of the layers
that run **after** it with Adam at ``lr`` for ``steps`` steps, the batches cycled in
order, on the MSE between the model's output and the original's, everything in eval
mode. Return the model (changed in place).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .. import lowrank
from ._check import Guard, attempt, fail, short, verdict


def _cases() -> list[tuple[str, nn.Linear, int, str]]:
    torch.manual_seed(1)
    return [
        (
            "20 → 12 at rank 4",
            nn.Linear(20, 12),
            4,
            "keep the r largest singular values",
        ),
        ("rank 1", nn.Linear(16, 10), 1, "U[:, :r], S[:r], Vh[:r]"),
        (
            "full rank (exact): 8 → 6 at rank 6",
            nn.Linear(8, 6),
            6,
            "at r = min(in, out) the product is the layer itself",
        ),
        (
            "no bias: 12 → 20 at rank 5",
            nn.Linear(12, 20, bias=False),
            5,
            "a layer without bias gives a second layer without bias",
        ),
    ]


def check_split(fn: Callable) -> bool:
    """Compare ``fn(layer, rank)`` with ``lwt.lowrank.svd_linear``: the layers' shapes
    and biases, balanced factors (√σ on each side) and the outputs."""

    def body() -> str:
        cases = _cases()
        for name, layer, r, cause in cases:
            ref = lowrank.svd_linear(layer, r)
            before = {k: v.clone() for k, v in layer.state_dict().items()}
            got = attempt("my_svd_split", Guard(["lowrank.py"]), fn, layer, r)
            if any(
                not torch.equal(v, layer.state_dict()[k]) for k, v in before.items()
            ):
                fail(
                    "the layer was changed",
                    case=name,
                    hint="copy the factors into new layers",
                )
            if not (
                isinstance(got, nn.Sequential)
                and len(got) == 2
                and all(isinstance(m, nn.Linear) for m in got)
            ):
                fail(
                    "return nn.Sequential(first, second) of two nn.Linear",
                    case=name,
                    got=type(got).__name__,
                )
            first, second = got
            shapes = (tuple(first.weight.shape), tuple(second.weight.shape))
            want = ((r, layer.in_features), (layer.out_features, r))
            if shapes != want:
                fail("weight shapes", case=name, expected=want, got=shapes, hint=cause)
            if first.bias is not None:
                fail(
                    "the first layer has a bias",
                    case=name,
                    hint="Linear(in, r, bias=False): the bias goes in the second layer",
                )
            if (second.bias is None) != (layer.bias is None) or (
                layer.bias is not None and not torch.allclose(second.bias, layer.bias)
            ):
                fail(
                    "the second layer's bias is not the layer's bias",
                    case=name,
                    hint=cause,
                )
            norms, want_norms = (
                first.weight.detach().norm(dim=1),
                ref[0].weight.norm(dim=1),
            )
            if not torch.allclose(norms, want_norms, rtol=1e-4, atol=1e-6):
                fail(
                    "the factors are not balanced",
                    case=name,
                    expected=f"row norms of first.weight = √σ = {short(want_norms)}",
                    got=short(norms),
                    hint="put √Σ_r on both sides: √Σ_r V_rᵀ and U_r √Σ_r",
                )
            x = torch.randn(5, layer.in_features)
            with torch.no_grad():
                diff = (got(x) - ref(x)).abs().max().item()
            if diff > 1e-4:
                fail(
                    f"outputs differ from lwt's (max difference {diff:.3g})",
                    case=name,
                    hint=cause,
                )
        return f"your split matches lwt.lowrank.svd_linear in {len(cases)} cases"

    return verdict(body)


def _mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(20, 32),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(32, 24),
        nn.ReLU(),
        nn.Linear(24, 6),
    )


def _product(layer: nn.Module) -> torch.Tensor:
    first, second = layer
    return (second.weight @ first.weight).detach()


def check_layerwise(fn: Callable) -> bool:
    """Compare ``fn(model, ranks, batches, steps, lr)`` with
    ``lwt.lowrank.layerwise_factorize(..., method="svd")`` on copies of small MLPs
    (with dropout): the split layers, their factors, the untouched layers and the
    outputs."""

    def body() -> str:
        cases = [
            ({"0": 6, "3": 4}, 15, 1e-2),
            ({"3": 3}, 10, 1e-2),
            ({"0": 4, "3": 4, "5": 2}, 8, 5e-3),
        ]
        for seed, (ranks, steps, lr) in enumerate(cases):
            name = f"ranks {ranks}, {steps} steps"
            gen = torch.Generator().manual_seed(seed)
            batches = [torch.randn(16, 20, generator=gen) for _ in range(3)]
            model, ref = _mlp(seed), _mlp(seed)
            first = min(int(k) for k in ranks)
            before = {
                k: v.clone()
                for k, v in model.state_dict().items()
                if int(k.split(".")[0]) < first
            }
            got = attempt(
                "my_layerwise",
                Guard(["lowrank.py"]),
                fn,
                model,
                dict(ranks),
                list(batches),
                steps,
                lr,
            )
            want = lowrank.layerwise_factorize(
                ref, ranks, batches, steps=steps, lr=lr, method="svd"
            )
            if not isinstance(got, nn.Module):
                fail("return the model", case=name, got=type(got).__name__)
            tune = (
                "split in forward order; the fine-tuning before this split differs: "
                "eval mode, Adam over the "
                "parameters of the layers after the split one only, MSE to the "
                "original model's outputs, the batches cycled in order"
            )
            for layer in sorted(ranks, key=int):
                split = got.get_submodule(layer)
                if not (isinstance(split, nn.Sequential) and len(split) == 2):
                    fail(
                        f"layer {layer} was not replaced by its SVD split",
                        case=name,
                        hint="use your my_svd_split: nn.Sequential(first, second)",
                    )
                same = torch.allclose(
                    _product(split), _product(want.get_submodule(layer)), atol=1e-4
                )
                if not same:
                    earliest = int(layer) == first
                    fail(
                        f"layer {layer}'s factors differ",
                        case=name,
                        hint="never train a split layer: its factors stay fixed"
                        if earliest
                        else f"{tune}; and never train a split layer",
                    )
            for k, v in before.items():
                if not torch.equal(v, got.state_dict()[k]):
                    fail(
                        f"{k} changed",
                        case=name,
                        hint="layers before the first split one are never trained",
                    )
            x = torch.randn(8, 20, generator=gen)
            with torch.no_grad():
                diff = (got.eval()(x) - want.eval()(x)).abs().max().item()
            if diff > 1e-4:
                fail(
                    f"outputs differ from lwt's (max difference {diff:.3g})",
                    case=name,
                    hint=f"{tune}; `steps` steps after each split",
                )
        return f"your layer-wise factorization matches lwt's in {len(cases)} cases"

    return verdict(body)


__all__ = ["check_layerwise", "check_split"]
