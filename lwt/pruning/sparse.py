"""Sparse storage: the honest file size of a pruned model.

A pruned model kept as a dense state dict stores every zero as 4 bytes (and with
``torch.nn.utils.prune`` masks attached, twice over). Here each mostly-zero tensor is
stored as a bitmask of its nonzeros (1 bit per weight) plus the nonzero values, as in
Deep Compression's sparse storage (Han, Mao, Dally. ICLR 2016), which uses relative
indices instead of a bitmask. The round trip is exact in value: every weight comes
back equal, and a pruned zero comes back as +0.0 (``weight_orig * mask`` makes −0.0
where the original weight was negative: the same number, another sign bit, which
the file does not store). The file loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import io

import torch
from torch import Tensor, nn


def to_sparse_state(
    model: nn.Module, *, min_sparsity: float = 0.5
) -> dict[str, Tensor]:
    """State dict where each float tensor with ≥ ``min_sparsity`` zeros is a bitmask.

    Such a tensor ``w`` becomes ``name.__mask`` (uint8, ``np.packbits`` of ``w != 0``,
    1 bit per weight), ``name.__values`` (the nonzeros, in order) and ``name.__shape``.
    Cost: ``n/8 + 4·nnz`` bytes instead of ``4·n``. Masks are folded in first.
    """
    import numpy as np  # only here: the rest of the folder needs none

    out: dict[str, Tensor] = {}
    for name, t in _effective_state(model).items():
        nz = t != 0
        if (
            t.is_floating_point()
            and t.numel()
            and 1 - nz.float().mean() >= min_sparsity
        ):
            bits = np.packbits(nz.flatten().numpy())
            out[name + ".__mask"] = torch.from_numpy(bits)
            out[name + ".__values"] = t[nz].clone()
            out[name + ".__shape"] = torch.tensor(t.shape)
        else:
            out[name] = t
    return out


def _effective_state(model: nn.Module) -> dict[str, Tensor]:
    """State dict with every ``torch.nn.utils.prune`` mask folded into its tensor:
    ``name_orig * name_mask`` is stored as ``name``, the mask itself is dropped."""
    state = model.state_dict()
    out = {}
    for key, t in state.items():
        if key.endswith("_mask") and key[:-5] + "_orig" in state:
            continue
        if key.endswith("_orig") and key[:-5] + "_mask" in state:
            key, t = key[:-5], t * state[key[:-5] + "_mask"]
        out[key] = t.detach().cpu().clone()
    return out


def from_sparse_state(sparse: dict[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of :func:`to_sparse_state`: a dense state dict, exact in value (zeros
    as +0.0)."""
    import numpy as np  # only here: the rest of the folder needs none

    dense = {}
    for key, t in sparse.items():
        if key.endswith(".__mask"):
            name = key[: -len(".__mask")]
            shape = tuple(sparse[name + ".__shape"].tolist())
            n = int(np.prod(shape))
            nz = torch.from_numpy(np.unpackbits(t.numpy(), count=n).astype(bool))
            values = sparse[name + ".__values"]
            w = torch.zeros(n, dtype=values.dtype)
            w[nz] = values
            dense[name] = w.view(shape)
        elif not key.endswith((".__values", ".__shape")):
            dense[key] = t
    return dense


def sparse_bytes(model: nn.Module, *, min_sparsity: float = 0.5) -> bytes:
    """The bytes of ``torch.save(to_sparse_state(model))``: the honest sparse file."""
    buf = io.BytesIO()
    torch.save(to_sparse_state(model, min_sparsity=min_sparsity), buf)
    return buf.getvalue()


def load_sparse(payload: bytes, model: nn.Module) -> nn.Module:
    """Load a :func:`sparse_bytes` file into an unpruned ``model`` of the same shape."""
    sparse = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    model.load_state_dict(from_sparse_state(sparse))
    return model
