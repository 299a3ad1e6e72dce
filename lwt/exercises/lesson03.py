"""Check of notebook 03 (low rank): splitting a ``Linear`` layer by truncated SVD.

Rules the check enforces (and the notebook states):
``first = Linear(in, r, bias=False)``
with weight ``√Σ_r V_rᵀ``, ``second = Linear(r, out)`` with weight ``U_r √Σ_r`` and the
original bias (none if the layer has none); the layer itself is left untouched. Singular
vectors may differ in sign, so the factors are compared through their row norms (√σ)
and the product.
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


__all__ = ["check_split"]
