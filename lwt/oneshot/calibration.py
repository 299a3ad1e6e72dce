"""Input statistics of linear layers from calibration batches (GPTQ, SparseGPT, Wanda,
AWQ and SmoothQuant all start from them).

For a ``nn.Linear`` with input ``x`` (any leading shape; the last dimension is the
``d_in`` features, every other one counts as a sample, e.g. the tokens of a
transformer) the hooks accumulate over all ``n`` samples::

    H     = 2/n · Σ x xᵀ          (d_in × d_in: the Hessian of ||W x − Ŵ x||², GPTQ)
    sq_j  = Σ x_j²                (per input feature: ||X_j||₂² for Wanda)
    amax_j = max |x_j|            (per input feature: SmoothQuant's activation range)
    amean_j = 1/n · Σ |x_j|       (per input feature: AWQ's activation magnitude)

References: Frantar et al. GPTQ. ICLR 2023. Frantar & Alistarh. SparseGPT. ICML 2023.
Sun et al. A Simple and Effective Pruning Approach for LLMs (Wanda). ICLR 2024.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class InputStats:
    """Accumulated statistics of one layer's inputs (see the module docstring)."""

    xtx: Tensor  # Σ x xᵀ, float64
    sq: Tensor  # Σ x_j², float64
    amax: Tensor  # max |x_j|
    asum: Tensor  # Σ |x_j|, float64
    n: int = 0

    @property
    def hessian(self) -> Tensor:
        """``H = 2/n · Σ x xᵀ`` (float32)."""
        return (2.0 * self.xtx / max(self.n, 1)).float()

    @property
    def norms(self) -> Tensor:
        """``||X_j||₂`` per input feature (float32)."""
        return self.sq.sqrt().float()

    @property
    def amean(self) -> Tensor:
        """Mean ``|x_j|`` per input feature (float32)."""
        return (self.asum / max(self.n, 1)).float()


def weight_layers(model: nn.Module) -> dict[str, nn.Linear | nn.Conv2d]:
    """Every ``nn.Linear`` and ``nn.Conv2d`` of ``model`` that computes through its own
    forward, by path, in module order (``nn.MultiheadAttention`` reads its
    ``out_proj`` weight directly, so that layer is left out: hooks see nothing)."""
    inside_mha = {
        f"{n}.{c}" if n else c
        for n, m in model.named_modules()
        if isinstance(m, nn.MultiheadAttention)
        for c, _ in m.named_children()
    }
    return {
        n: m
        for n, m in model.named_modules()
        if n and n not in inside_mha and isinstance(m, (nn.Linear, nn.Conv2d))
    }


def linear_layers(model: nn.Module) -> dict[str, nn.Linear]:
    """The ``nn.Linear`` layers of :func:`weight_layers`."""
    return {n: m for n, m in weight_layers(model).items() if isinstance(m, nn.Linear)}


def set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    """Put ``module`` at ``path`` (e.g. ``"blocks.0.attn.qkv"``) inside ``model``."""
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def check_damp(damp: float) -> None:
    """``damp`` must be a number in (0, 1) (a fraction of the mean Hessian diagonal)."""
    if isinstance(damp, bool) or not isinstance(damp, (int, float)) or not 0 < damp < 1:
        raise ValueError(f"damp must be a number in (0, 1), got {damp!r}")


def input_stats(
    model: nn.Module, batches: Iterable, layers: Sequence[str] | None = None
) -> dict[str, InputStats]:
    """Run ``model`` on ``batches`` (inputs, or ``(input, label)`` pairs) in eval mode
    under ``no_grad`` and accumulate :class:`InputStats` of each named linear layer
    (default: all). The model is left in the mode it was in.

    Raises:
        ValueError: a name that is not an ``nn.Linear`` of the model, or no batches.
    """
    found = linear_layers(model)
    names = list(found) if layers is None else list(layers)
    bad = [n for n in names if n not in found]
    if bad:
        raise ValueError(f"layers {bad} are not nn.Linear layers of the model; "
                         f"choose from {list(found)}")  # fmt: skip
    stats = {}
    for n in names:
        d = found[n].in_features
        stats[n] = InputStats(torch.zeros(d, d, dtype=torch.float64),
                              torch.zeros(d, dtype=torch.float64), torch.zeros(d),
                              torch.zeros(d, dtype=torch.float64))  # fmt: skip

    def hook(name: str):  # noqa: ANN202
        def fn(module: nn.Module, args: tuple) -> None:
            x = args[0].detach().reshape(-1, module.in_features).double()
            s = stats[name]
            s.xtx += x.T.cpu() @ x.cpu()
            s.sq += (x * x).sum(0).cpu()
            s.amax = torch.maximum(s.amax, x.abs().amax(0).float().cpu())
            s.asum += x.abs().sum(0).cpu()
            s.n += x.shape[0]

        return fn

    handles = [found[n].register_forward_pre_hook(hook(n)) for n in names]
    was_training = model.training
    model.eval()
    seen = 0
    try:
        with torch.no_grad():
            for batch in batches:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                model(x)
                seen += 1
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not seen:
        raise ValueError("batches yielded nothing: pass calibration inputs")
    if idle := [n for n, s in stats.items() if s.n == 0]:
        raise ValueError(f"layers {idle} were never called by the model's forward: "
                         "their calibration statistics are empty")  # fmt: skip
    return stats


def prepare(weight: Tensor, hessian: Tensor, damp: float) -> tuple[Tensor, Tensor]:
    """GPTQ's and SparseGPT's common start: a float copy of ``weight`` with the columns
    of never-active inputs (``H_jj = 0``) zeroed, and the upper Cholesky factor of
    ``(H + λI)⁻¹`` with ``λ = damp · mean(diag H)`` (its rows give the error-feedback
    updates; Frantar et al. 2023 use it for numerical stability)."""
    check_damp(damp)
    w = weight.detach().float().clone()
    h = hessian.detach().float().clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    h += damp * torch.diag(h).mean() * torch.eye(h.shape[0])
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(h))
    return w, torch.linalg.cholesky(inverse, upper=True)
