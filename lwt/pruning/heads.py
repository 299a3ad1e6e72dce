"""Attention-head pruning (ヘッドの枝刈り): score heads, then remove them for real from
the query/key/value and output projections (Michel et al. 2019, "Are Sixteen Heads
Really Better than One?").

Works on any attention module with ``qkv`` (a ``Linear(D, 3·H·d)`` whose rows are
``[Q heads | K heads | V heads]``, head ``h`` the rows ``h·d … (h+1)·d − 1`` of each
block), ``proj`` (``Linear(H·d, D)``), and ``heads`` / ``head_dim`` attributes, as
``lwt.models.cct.Attention``. Importance of head ``h`` (Michel et al., eq. 2): with a
gate ``ξ_h = 1`` multiplying the head's output,

    I_h = E_x | ∂L(x) / ∂ξ_h |,

the expected sensitivity of the loss to masking the head, over calibration batches.
Michel et al. normalise each layer's importances by their L2 norm and then remove the
globally least important heads (``heads_to_keep``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from ._amounts import _fraction
from .surgery import keep_inputs, keep_outputs


def attention_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every attention module of ``model`` (see the module docstring), by path."""
    need = ("qkv", "proj", "heads", "head_dim")
    return {n: m for n, m in model.named_modules() if all(hasattr(m, a) for a in need)}


def head_importance(
    model: nn.Module,
    batches: Iterable,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = nn.functional.cross_entropy,
) -> dict[str, Tensor]:
    """``{attention path: I (heads,)}`` summed over ``batches`` of ``(x, y)``; the model
    is left unchanged (gates are hooks, removed after; gradients zeroed)."""
    attns = attention_modules(model)
    if not attns:
        raise ValueError(
            "model has no attention modules with qkv, proj, heads, head_dim"
        )
    gates = {n: torch.ones(a.heads, requires_grad=True) for n, a in attns.items()}
    scores = {n: torch.zeros(a.heads) for n, a in attns.items()}

    def gate(name: str, attn: nn.Module):  # noqa: ANN202
        def hook(module: nn.Module, args: tuple) -> tuple:
            x = args[0]
            shape = (*x.shape[:-1], attn.heads, attn.head_dim)
            g = gates[name].to(x.dtype)
            return ((x.reshape(shape) * g[:, None]).reshape(x.shape),)

        return hook

    handles = [a.proj.register_forward_pre_hook(gate(n, a)) for n, a in attns.items()]
    was_training = model.training
    model.eval()
    try:
        for x, y in batches:
            loss = loss_fn(model(x), y)
            grads = torch.autograd.grad(loss, list(gates.values()))
            for n, g in zip(gates, grads, strict=True):
                scores[n] += g.abs()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return scores


def heads_to_keep(
    scores: Mapping[str, Tensor], amount: float, *, normalize: bool = True
) -> dict[str, list[int]]:
    """The heads to keep when a fraction ``amount`` of all heads is removed: the
    lowest importances across layers (each layer's scores divided by their L2 norm
    when ``normalize``), at least one head kept in every layer; ties: lower layer and
    head index removed first. Nothing changes; pass the result to :func:`prune_heads`.
    """
    amount = _fraction(amount, "amount", 1.0)
    if not scores:
        raise ValueError("scores is empty: pass head_importance's result")
    total = sum(len(s) for s in scores.values())
    k = round(amount * total)
    if k > total - len(scores):
        raise ValueError(f"amount {amount} removes {k} of {total} heads, but one head "
                         f"per layer must stay: at most {total - len(scores)} can "
                         "go")  # fmt: skip
    norm = {p: s / s.norm().clamp(min=1e-12) if normalize else s
            for p, s in scores.items()}  # fmt: skip
    order = sorted((float(v), i, h, p) for i, (p, s) in enumerate(norm.items())
                   for h, v in enumerate(s.tolist()))  # fmt: skip
    keep = {p: set(range(len(s))) for p, s in scores.items()}
    for _, _, h, p in order:
        if k == 0:
            break
        if len(keep[p]) > 1:
            keep[p].discard(h)
            k -= 1
    return {p: sorted(v) for p, v in keep.items()}


@torch.no_grad()
def remove_heads(attn: nn.Module, keep: Sequence[int]) -> nn.Module:
    """Keep only heads ``keep`` of ``attn`` (in place): the rows of Q, K and V and the
    columns of the output projection of the other heads are deleted; returns ``attn``.
    """
    h, d = attn.heads, attn.head_dim
    keep = sorted(set(int(k) for k in keep))
    if not keep:
        raise ValueError(
            "keep at least one head: a layer without heads has no attention"
        )
    if keep[0] < 0 or keep[-1] >= h:
        raise ValueError(f"heads must be in [0, {h - 1}], got {keep}")
    heads = torch.tensor(keep)
    per_head = (heads[:, None] * d + torch.arange(d)).flatten()  # one head's d rows
    rows = torch.cat([per_head + part * h * d for part in range(3)])  # in Q, K and V
    attn.qkv = keep_outputs(attn.qkv, rows)
    attn.proj = keep_inputs(attn.proj, heads, spatial=d)  # input c·d + s is head c's
    attn.heads = len(keep)
    return attn


def prune_heads(model: nn.Module, keep: Mapping[str, Sequence[int]]) -> nn.Module:
    """Remove heads from several attention modules (``{path: heads to keep}``), every
    path and index checked before anything changes. Returns ``model`` (in place)."""
    attns = attention_modules(model)
    bad = [p for p in keep if p not in attns]
    if bad:
        raise ValueError(f"{bad} are not attention modules; choose from {list(attns)}")
    for p, k in keep.items():
        if not k or min(k) < 0 or max(k) >= attns[p].heads:
            raise ValueError(f"{p}: keep must name heads in [0, {attns[p].heads - 1}], "
                             f"at least one, got {list(k)}")  # fmt: skip
    for p, k in keep.items():
        remove_heads(attns[p], k)
    return model
