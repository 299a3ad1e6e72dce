"""Low-rank factorization (低ランク分解): replace a layer by a chain of smaller ones.

Linear ``W (out × in)`` — truncated SVD (Xue et al. 2013; Denton et al. 2014):

    W ≈ U_r Σ_r V_rᵀ = (U_r √Σ_r)(√Σ_r V_rᵀ)  →  Linear(in, r) → Linear(r, out)

Conv2d ``W (T × S × kh × kw)`` — Tucker-2 on the channel modes (Kim et al. 2016):

    W ≈ C ×₀ U_T ×₁ U_S      (U_T: T × R_out, U_S: S × R_in, C: R_out × R_in × kh × kw)
    →  1×1 conv S → R_in (U_Sᵀ) → kh×kw conv R_in → R_out (C) → 1×1 conv R_out → T (U_T)

HOSVD takes U_T, U_S as the leading left singular vectors of the mode-0 / mode-1
unfoldings and ``C = W ×₀ U_Tᵀ ×₁ U_Sᵀ``; HOOI (TensorLy ``partial_tucker``) refines
them. Conv2d — CP of rank R (Lebedev et al. 2015, who fit it by non-linear least
squares), here by CP-ALS (TensorLy ``parafac``):

    W[t, s, u, v] ≈ Σ_r a[t, r] b[s, r] c[u, r] d[v, r]
    →  1×1 S → R (b) → depthwise kh×1 (c) → depthwise 1×kw (d) → 1×1 R → T (a)

Every factor is a real, smaller ``nn.Linear``/``nn.Conv2d`` (stride, padding and
dilation kept on the spatial convs; the original bias on the last layer), created on
the layer's device and dtype. ``factorize`` replaces layers of any model (everything is
checked before the model is touched); ``layerwise_factorize`` is the layer-wise
procedure with fine-tuning of the later layers (Denton et al. 2014; Jaderberg et al.
2014 and Zhang et al. 2016 fit each factored layer to its own original responses
instead). Depends only on ``torch`` (and ``tensorly`` for HOOI/CP, imported lazily).

References: Xue, Li, Gong. Restructuring of deep neural network acoustic models with
singular value decomposition. Interspeech 2013. Denton, Zaremba, Bruna, LeCun, Fergus.
Exploiting linear structure within convolutional networks for efficient evaluation.
NeurIPS 2014. Jaderberg, Vedaldi, Zisserman. Speeding up convolutional neural networks
with low rank expansions. BMVC 2014. Lebedev, Ganin, Rakhuba, Oseledets, Lempitsky.
Speeding-up convolutional neural networks using fine-tuned CP-decomposition. ICLR 2015.
Kim, Park, Yoo, Choi, Yang, Shin. Compression of deep convolutional neural networks for
fast and low power mobile applications. ICLR 2016. Zhang, Zou, He, Sun. Accelerating
very deep convolutional networks for classification and detection. TPAMI 2016 (2015).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn

Layer = nn.Linear | nn.Conv2d
Rank = int | tuple[int, int]
METHODS = ("auto", "svd", "tucker2", "tucker2-hooi", "cp")


@contextlib.contextmanager
def _tensorly() -> Iterator:
    """TensorLy with the PyTorch backend for this block only (previous one restored)."""
    import tensorly as tl
    from tensorly.backend import backend_context

    with backend_context("pytorch", local_threadsafe=True), warnings.catch_warnings():
        # A rank above a mode's size is expected (completed with random columns).
        warnings.filterwarnings("ignore", "Trying to compute SVD with n_eigenvecs")
        yield tl


def _work(w: Tensor) -> Tensor:
    """A float64 copy of ``w`` for the decomposition (CPU unless on CUDA)."""
    device = w.device if w.device.type in ("cpu", "cuda") else torch.device("cpu")
    return w.detach().to(device, torch.float64)


def _kind(layer: nn.Module, method: str) -> str:
    """The decomposition used for ``layer``: Linear → svd; Conv2d → ``method``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if type(layer) is nn.Linear:
        return "svd"
    if type(layer) is not nn.Conv2d:
        raise TypeError(f"expected nn.Linear or nn.Conv2d, got {type(layer).__name__}")
    if layer.groups != 1:
        raise TypeError(f"grouped/depthwise Conv2d (groups={layer.groups}) unsupported")
    if method == "svd":
        raise TypeError(
            "method 'svd' is for Linear layers; use tucker2 or cp for Conv2d"
        )
    return "tucker2" if method == "auto" else method


def _check_rank(layer: Layer, rank: Rank, kind: str, name: str = "layer") -> Rank:
    """``rank`` validated for ``kind`` (Tucker-2 accepts ``r`` as ``(r, r)``, and a
    two-element list, as read back from JSON, as a tuple)."""

    def is_int(x: object) -> bool:
        return isinstance(x, int) and not isinstance(x, bool)

    if kind.startswith("tucker2") and is_int(rank):
        rank = (rank, rank)
    if isinstance(rank, list):
        rank = tuple(rank)
    if kind.startswith("tucker2"):
        if not (isinstance(rank, tuple) and len(rank) == 2 and all(map(is_int, rank))):
            raise TypeError(
                f"{name}: Tucker-2 ranks must be (R_in, R_out), got {rank!r}"
            )
        S, T = layer.in_channels, layer.out_channels
        if not (1 <= rank[0] <= S and 1 <= rank[1] <= T):
            raise ValueError(
                f"{name}: Tucker-2 ranks (R_in, R_out) must be in [1, {S}] × [1, {T}]"
                f", got {rank}"
            )
        return rank
    if not is_int(rank):
        raise TypeError(f"{name}: {kind} rank must be an int, got {rank!r}")
    top = min(layer.in_features, layer.out_features) if kind == "svd" else math.inf
    if not 1 <= rank <= top:
        raise ValueError(f"{name}: {kind} rank must be in [1, {top}], got {rank}")
    return rank


def _linear(i: int, o: int, weight: Tensor, ref: nn.Linear, bias: bool) -> nn.Linear:
    w = ref.weight
    new = nn.Linear(i, o, bias=bias, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(weight).requires_grad_(w.requires_grad)
        if bias:
            new.bias.copy_(ref.bias).requires_grad_(ref.bias.requires_grad)
    return new


def _conv(
    ref: nn.Conv2d, weight: Tensor, *, bias: bool = False, **options
) -> nn.Conv2d:
    """A conv holding ``weight`` on ``ref``'s device/dtype (``ref``'s bias if ``bias``);
    ``options``: stride, padding, dilation, groups. The spatial convs keep ``ref``'s
    padding mode: padding commutes with the 1×1 (per-pixel) convs around them."""
    w, (o, i, kh, kw) = ref.weight, weight.shape
    mode = ref.padding_mode if (kh, kw) != (1, 1) else "zeros"
    i *= options.get("groups", 1)
    new = nn.Conv2d(
        i,
        o,
        (kh, kw),
        bias=bias,
        padding_mode=mode,
        device=w.device,
        dtype=w.dtype,
        **options,
    )
    with torch.no_grad():
        new.weight.copy_(weight).requires_grad_(w.requires_grad)
        if bias:
            new.bias.copy_(ref.bias).requires_grad_(ref.bias.requires_grad)
    return new


def _done(layers: list[nn.Module], ref: nn.Module) -> nn.Sequential:
    return nn.Sequential(*layers).train(ref.training)


def svd_linear(layer: nn.Linear, rank: int) -> nn.Sequential:
    """Truncated SVD ``W ≈ U_r Σ_r V_rᵀ`` (Xue et al. 2013; Denton et al. 2014).

    Returns ``Linear(in, r, bias=False)`` with weight ``√Σ_r V_rᵀ`` then
    ``Linear(r, out)`` with weight ``U_r √Σ_r`` and the original bias. ``r(in + out)``
    weights instead of ``in·out``; at ``r = min(in, out)`` it is exact.
    """
    rank = _check_rank(layer, rank, _kind(layer, "svd"))
    U, s, Vh = torch.linalg.svd(_work(layer.weight), full_matrices=False)
    root = s[:rank].sqrt()
    first = _linear(layer.in_features, rank, root[:, None] * Vh[:rank], layer, False)
    second = _linear(
        rank, layer.out_features, U[:, :rank] * root, layer, layer.bias is not None
    )
    return _done([first, second], layer)


def _leading(m: Tensor, r: int) -> Tensor:
    """The ``r`` leading left singular vectors of ``m`` (completed if ``r`` > cols)."""
    return torch.linalg.svd(m, full_matrices=m.shape[0] > m.shape[1])[0][:, :r]


def tucker2_conv(
    conv: nn.Conv2d, ranks: tuple[int, int], *, method: str = "hosvd"
) -> nn.Sequential:
    """Tucker-2 of the kernel's channel modes (Kim et al. 2016).

    ``W (T, S, kh, kw) ≈ C ×₀ U_T ×₁ U_S`` with ``ranks = (R_in, R_out)``:
    ``"hosvd"``: ``U_T`` / ``U_S`` = leading left singular vectors of the mode-0
    (``T × S·kh·kw``) / mode-1 (``S × T·kh·kw``) unfoldings, ``C = W ×₀ U_Tᵀ ×₁ U_Sᵀ``.
    ``"hooi"``: TensorLy ``partial_tucker`` (HOOI, modes 0 and 1) started from HOSVD.

    Returns 1×1 conv ``S → R_in`` (``U_Sᵀ``, no bias) → ``kh×kw`` conv ``R_in → R_out``
    (``C``; the original stride, padding, dilation; no bias) → 1×1 conv ``R_out → T``
    (``U_T``, the original bias). Exact at ``ranks = (S, T)``.
    """
    if method not in ("hosvd", "hooi"):
        raise ValueError(f"method must be 'hosvd' or 'hooi', got {method!r}")
    r_in, r_out = _check_rank(conv, ranks, _kind(conv, "tucker2"))
    W = _work(conv.weight)
    T, S = W.shape[:2]
    if method == "hosvd":
        u_t = _leading(W.reshape(T, -1), r_out)
        u_s = _leading(W.transpose(0, 1).reshape(S, -1), r_in)
        core = torch.einsum("tsuv,to,si->oiuv", W, u_t, u_s)
    else:
        with _tensorly():
            from tensorly.decomposition import partial_tucker

            out = partial_tucker(
                W,
                [r_out, r_in],
                modes=[0, 1],
                init="svd",
                n_iter_max=100,
                tol=1e-6,
                random_state=0,
            )
        # TensorLy 0.10 returns ((core, factors), errors); older ones (core, factors)
        core, (u_t, u_s) = out if torch.is_tensor(out[0]) else out[0]
    geometry = {
        "stride": conv.stride,
        "padding": conv.padding,
        "dilation": conv.dilation,
    }
    first = _conv(conv, u_s.T[:, :, None, None])
    last = _conv(conv, u_t[:, :, None, None], bias=conv.bias is not None)
    return _done([first, _conv(conv, core, **geometry), last], conv)


def cp_conv(
    conv: nn.Conv2d, rank: int, *, n_iter_max: int = 200, seed: int = 0
) -> nn.Sequential:
    """Rank-R CP of the kernel by CP-ALS (TensorLy ``parafac``; Lebedev et al.: NLS).

    ``W[t, s, u, v] ≈ Σ_r a[t, r] b[s, r] c[u, r] d[v, r]``, started from the HOSVD
    factors (random columns from ``seed`` where a mode is shorter than R); each term's
    norm λ_r is spread as ``λ_r^¼`` over its four factors. Returns 1×1 conv ``S → R``
    (``b``) → depthwise ``kh×1`` (``c``; the height stride/padding/dilation) →
    depthwise ``1×kw`` (``d``; the width ones) → 1×1 conv ``R → T`` (``a``, the
    original bias). Exact (up to ALS convergence) when W has CP rank ≤ R.
    """
    rank = _check_rank(conv, rank, _kind(conv, "cp"))
    W = _work(conv.weight)
    gen = torch.Generator().manual_seed(seed)
    init = []  # HOSVD start (TensorLy 0.10's own "svd" init fails for some shapes)
    for mode, n in enumerate(W.shape):
        u = _leading(W.movedim(mode, 0).reshape(n, -1), rank)
        extra = torch.rand(n, rank - u.shape[1], generator=gen, dtype=W.dtype)
        init.append(torch.cat([u, extra.to(W.device)], 1))
    with _tensorly():
        from tensorly.decomposition import parafac

        ones = torch.ones(rank, dtype=W.dtype, device=W.device)
        _, factors = parafac(
            W,
            rank,
            n_iter_max=n_iter_max,
            init=(ones, init),
            tol=1e-10,
            random_state=seed,
        )
    norms = [f.norm(dim=0) for f in factors]  # balance: column r of each gets λ_r^¼
    scale = (norms[0] * norms[1] * norms[2] * norms[3]) ** 0.25
    a, b, c, d = (
        f * scale / n.clamp_min(1e-300) for f, n in zip(factors, norms, strict=True)
    )
    (sh, sw), (dh, dw), pad = conv.stride, conv.dilation, conv.padding
    ph, pw = (pad, pad) if isinstance(pad, str) else ((pad[0], 0), (0, pad[1]))
    height = _conv(
        conv,
        c.T[:, None, :, None],
        groups=rank,
        stride=(sh, 1),
        padding=ph,
        dilation=(dh, 1),
    )
    width = _conv(
        conv,
        d.T[:, None, None, :],
        groups=rank,
        stride=(1, sw),
        padding=pw,
        dilation=(1, dw),
    )
    first = _conv(conv, b.T[:, :, None, None])
    last = _conv(conv, a[:, :, None, None], bias=conv.bias is not None)
    return _done([first, height, width, last], conv)


def _build(layer: Layer, kind: str, rank: Rank) -> nn.Sequential:
    if kind == "svd":
        return svd_linear(layer, rank)
    if kind == "cp":
        return cp_conv(layer, rank)
    return tucker2_conv(
        layer, rank, method="hooi" if kind == "tucker2-hooi" else "hosvd"
    )


def energy_rank(matrix: Tensor, energy: float) -> int:
    """Smallest ``r`` with ``Σ_{i≤r} σ_i² ≥ energy · Σ_i σ_i²``, energy in (0, 1]."""
    if not (isinstance(matrix, Tensor) and matrix.dim() == 2):
        raise ValueError("matrix must be a 2-D tensor")
    if not 0.0 < energy <= 1.0:
        raise ValueError(f"energy must be in (0, 1], got {energy}")
    cum = torch.cumsum(torch.linalg.svdvals(_work(matrix)) ** 2, 0)
    goal = energy * cum[-1] * (1 - 1e-12)  # 9/14 · 14 must not round above 9
    return min(int(torch.searchsorted(cum, goal)) + 1, len(cum))


def factored_params(layer: Layer, rank: Rank, *, method: str = "auto") -> int:
    """Parameters of the factored layer (``b`` = out/T if the layer has a bias):

    svd ``r(in + out) + b``; tucker2 ``S·R_in + R_in·R_out·kh·kw + R_out·T + b``;
    cp ``R(S + kh + kw + T) + b``.
    """
    kind = _kind(layer, method)
    rank = _check_rank(layer, rank, kind)
    b = layer.bias.numel() if layer.bias is not None else 0
    if kind == "svd":
        return rank * (layer.in_features + layer.out_features) + b
    T, S, kh, kw = layer.weight.shape
    if kind == "cp":
        return rank * (S + kh + kw + T) + b
    return S * rank[0] + rank[0] * rank[1] * kh * kw + rank[1] * T + b


def factored_macs(
    layer: Layer,
    rank: Rank,
    *,
    method: str = "auto",
    out_hw: tuple[int, int] | None = None,
    in_hw: tuple[int, int] | None = None,
) -> int:
    """Multiply-accumulates of the factored layer for one sample (biases not counted).

    svd: ``r(in + out)``. A Conv2d needs its output size ``out_hw = (H', W')``; the
    first 1×1 conv runs on the input ``(H, W)`` (``in_hw``; default the smallest input
    giving ``out_hw``, exact for stride 1):
    tucker2 ``S·R_in·H·W + (R_in·R_out·kh·kw + R_out·T)·H'·W'``;
    cp ``S·R·H·W + R·kh·H'·W + R·kw·H'·W' + R·T·H'·W'``.
    """
    kind = _kind(layer, method)
    rank = _check_rank(layer, rank, kind)
    if kind == "svd":
        if out_hw is not None:
            raise ValueError("out_hw is for Conv2d layers; a Linear needs none")
        return rank * (layer.in_features + layer.out_features)
    if out_hw is None:
        raise ValueError("a Conv2d needs out_hw=(H', W') to count MACs")
    T, S, kh, kw = layer.weight.shape
    (ho, wo), pad = out_hw, layer.padding
    if in_hw is None:  # invert H' = ⌊(H + 2p − d(k − 1) − 1) / s⌋ + 1
        pad = {"valid": (0, 0), "same": None}.get(pad, pad)  # type: ignore[arg-type]
        in_hw = (
            out_hw
            if pad is None
            else tuple(
                (o - 1) * s + d * (k - 1) + 1 - 2 * p
                for o, s, d, k, p in zip(
                    out_hw, layer.stride, layer.dilation, (kh, kw), pad, strict=True
                )
            )
        )
    hi, wi = in_hw
    if kind == "cp":
        return rank * (S * hi * wi + kh * ho * wi + kw * ho * wo + T * ho * wo)
    return S * rank[0] * hi * wi + (rank[0] * rank[1] * kh * kw + rank[1] * T) * ho * wo


def rank_for_ratio(layer: Layer, ratio: float, *, method: str = "auto") -> Rank:
    """The largest rank whose ``factored_params`` is ≤ ``original params / ratio``.

    Tucker-2: ``(R_in, R_out) = (round(S·α), round(T·α))`` for the largest such α in
    (0, 1]. At least rank 1 (or (1, 1)) is returned, even if it misses the budget.
    """
    kind = _kind(layer, method)
    if not ratio > 1:
        raise ValueError(f"ratio must be > 1 (original / factored params), got {ratio}")
    budget = sum(p.numel() for p in layer.parameters()) / ratio
    fits = lambda r: factored_params(layer, r, method=kind) <= budget  # noqa: E731
    if kind == "svd":
        rs = range(1, min(layer.in_features, layer.out_features) + 1)
        return max((r for r in rs if fits(r)), default=1)
    if kind == "cp":
        b = layer.out_channels if layer.bias is not None else 0
        T, S, kh, kw = layer.weight.shape
        return max(1, int((budget - b) // (S + kh + kw + T)))
    S, T = layer.in_channels, layer.out_channels
    steps = sorted({(i + 0.5) / n for n in (S, T) for i in range(n)})  # rounding jumps
    best = (1, 1)
    for a in steps:  # the parameter count grows with α: keep the last pair that fits
        pair = (
            min(S, max(1, round(S * a + 1e-9))),
            min(T, max(1, round(T * a + 1e-9))),
        )
        if not fits(pair):
            break
        best = pair
    return best


def breakeven_rank_1x1(in_ch: int, out_ch: int) -> float:
    """``S·T / (S + T)``: a 1×1 conv (or Linear) factored at rank r saves weights only
    if ``r(S + T) < S·T``, i.e. ``r`` below this — under half of ``min(S, T)``, so
    compressing a 1×1 conv costs a lot of rank. Tucker-2 of a 1×1 conv is just an SVD
    of its ``T × S`` matrix plus a useless ``R_in × R_out`` core in the middle."""
    return in_ch * out_ch / (in_ch + out_ch)


def _plan(
    model: nn.Module,
    ranks: dict[str, Rank] | None,
    ratio: float | None,
    energy: float | None,
    method: str,
    layers: Sequence[str] | None,
) -> dict[str, tuple[Layer, str, Rank]]:
    """Check every requested factorization without touching the model.

    Returns ``{path: (layer, kind, rank)}``; raises what ``factorize`` documents.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if sum(x is not None for x in (ranks, ratio, energy)) != 1:
        raise ValueError("give exactly one of ranks, ratio or energy")
    if ranks is not None and layers is not None:
        raise ValueError("layers goes with ratio/energy; with ranks, name layers in it")
    if energy is not None and not 0.0 < energy <= 1.0:
        raise ValueError(f"energy must be in (0, 1], got {energy}")
    if ratio is not None and not ratio > 1:
        raise ValueError(f"ratio must be > 1, got {ratio}")
    known = {
        n: m for n, m in model.named_modules() if type(m) in (nn.Linear, nn.Conv2d)
    }
    if isinstance(layers, str):
        raise TypeError(f"layers must be a sequence of paths, got {layers!r}")
    if ranks is not None:
        names = list(ranks)
    elif layers is not None:
        names = list(layers)
    else:  # every Linear, every spatial groups=1 Conv2d (unless method="svd")
        names = [
            n
            for n, m in known.items()
            if type(m) is nn.Linear
            or (method != "svd" and m.groups == 1 and m.kernel_size != (1, 1))
        ]
    if ranks is None and not names:
        raise ValueError("the model has no layer to factorize")
    plan = {}
    for name in names:
        if name not in known:
            ok = [n for n, m in known.items() if getattr(m, "groups", 1) == 1]
            raise ValueError(
                f"{name!r} is not a Linear/Conv2d of the model; factorizable: {ok}"
            )
        layer = known[name]
        try:
            kind = _kind(layer, method)
        except TypeError as err:
            raise TypeError(f"{name}: {err}") from None
        if ranks is not None:
            rank = ranks[name]
        elif ratio is not None:
            rank = rank_for_ratio(layer, ratio, method=kind)
        elif kind == "svd":
            rank = energy_rank(layer.weight.detach(), energy)
        elif kind == "cp":
            raise ValueError(
                f"{name}: the energy rule has no CP rank; give ranks or ratio"
            )
        else:
            w = layer.weight.detach()
            rank = (
                energy_rank(w.transpose(0, 1).flatten(1), energy),
                energy_rank(w.flatten(1), energy),
            )
        plan[name] = (layer, kind, _check_rank(layer, rank, kind, name))
    return plan


def _set(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


def factorize(
    model: nn.Module,
    ranks: dict[str, Rank] | None = None,
    *,
    ratio: float | None = None,
    energy: float | None = None,
    method: str = "auto",
    layers: Sequence[str] | None = None,
) -> nn.Module:
    """Replace layers of ``model`` in place by their factored Sequentials.

    Exactly one rule: ``ranks`` ({path: rank}; Tucker-2 takes ``(R_in, R_out)``),
    ``ratio`` (``rank_for_ratio``) or ``energy`` (``energy_rank`` of W; for Tucker-2 of
    the mode-1 / mode-0 unfoldings) for ``layers`` (default: every Linear and every
    non-1×1, ``groups=1`` Conv2d). Linear layers always get SVD; Conv2d layers get
    ``method`` ("auto" = "tucker2" HOSVD, "tucker2-hooi", "cp"; "svd" = Linears only).

    Raises (before anything is changed): ValueError for an unknown path (the known
    layers are listed), a rank out of range (the range is named), a bad rule;
    TypeError for grouped/depthwise convs or a rank of the wrong form.
    """
    plan = _plan(model, ranks, ratio, energy, method, layers)
    new = {
        name: _build(layer, kind, rank) for name, (layer, kind, rank) in plan.items()
    }
    for name, module in new.items():
        _set(model, name, module)
    return model


def _weight(factored: nn.Sequential) -> Tensor:
    """``Ŵ`` rebuilt from the factors of a factored Sequential (float64)."""
    w = [_work(m.weight) for m in factored]
    if len(w) == 2:
        return w[1] @ w[0]
    if len(w) == 3:
        return torch.einsum(
            "to,oiuv,is->tsuv", w[2][:, :, 0, 0], w[1], w[0][:, :, 0, 0]
        )
    a, b, c, d = w[3][:, :, 0, 0], w[0][:, :, 0, 0], w[1][:, 0, :, 0], w[2][:, 0, 0, :]
    return torch.einsum("tr,rs,ru,rv->tsuv", a, b, c, d)


def reconstruction_error(original: nn.Module, factored: nn.Module) -> float:
    """Relative error ``‖W − Ŵ‖_F / ‖W‖_F`` of a layer and its factored Sequential
    (Ŵ is multiplied out of the factors for this measurement only)."""
    if (
        type(original) not in (nn.Linear, nn.Conv2d)
        or not isinstance(factored, nn.Sequential)
        or len(factored) not in (2, 3, 4)
    ):
        raise TypeError("expected a Linear/Conv2d and its factored nn.Sequential")
    W, W_hat = _work(original.weight), _weight(factored)
    if W.shape != W_hat.shape:
        raise ValueError(f"shapes differ: {tuple(W.shape)} vs {tuple(W_hat.shape)}")
    return float(torch.linalg.norm(W - W_hat.to(W.device)) / torch.linalg.norm(W))


def layerwise_factorize(
    model: nn.Module,
    ranks: dict[str, Rank],
    batches: Iterable[Tensor],
    *,
    steps: int = 100,
    lr: float = 1e-3,
    method: str = "auto",
    target: str | None = None,
    loss: str = "reconstruction",
    after_layer: Callable[[str, nn.Module], None] | None = None,
) -> nn.Module:
    """Factorize layer by layer, fine-tuning the later layers after each (Denton et al.
    2014; Jaderberg et al. 2014 and Zhang et al. 2016 reconstruct each layer's own
    responses instead).

    With a frozen copy ``f`` of the original, for each layer of ``ranks`` in forward
    order: replace it (its factors are then fixed), then train the parameters of the
    modules that run after it for ``steps`` Adam steps at ``lr`` over ``batches``
    (cycled; tensors or ``(x, y)`` pairs) to minimise, with ``loss="reconstruction"``,
    the MSE between the model's and ``f``'s activations at module ``target`` (None:
    the model output), ``‖g(x) − f(x)‖² / n`` — no labels needed — or, with
    ``loss="task"``, the cross-entropy of the model's output against the labels (the
    batches must then be ``(x, y)`` pairs and ``target`` None). The forward order comes
    from a forward pass of the first batch with hooks. Runs in eval mode (BatchNorm
    statistics frozen, dropout off); train/eval flags and every ``requires_grad`` are
    restored at the end (frozen parameters are never trained). ``after_layer(name,
    model)``, if given, is called after each layer's fine-tune (e.g. to score it).
    """
    if loss not in ("reconstruction", "task"):
        raise ValueError(f"loss must be 'reconstruction' or 'task', got {loss!r}")
    batches = list(batches)
    if loss == "task" and (target is not None or not all(
            isinstance(b, tuple | list) and len(b) == 2 for b in batches)):  # fmt: skip
        raise ValueError("loss='task' needs (x, y) batches and target=None")
    plan = _plan(model, ranks, None, None, method, None)
    if any(kind in ("tucker2-hooi", "cp") for _, kind, _ in plan.values()):
        import tensorly  # noqa: F401  (fail now, not after some layers changed)
    xs = [b[0] if isinstance(b, tuple | list) else b for b in batches]
    ys = [b[1] for b in batches] if loss == "task" else None
    if not xs:
        raise ValueError("batches is empty")
    if ys is not None and not all(
        isinstance(y, Tensor) and not y.is_floating_point() and y.dim() == 1
        and len(y) == len(x) for x, y in zip(xs, ys, strict=True)
    ):  # fmt: skip
        raise ValueError("batches: with loss='task' each y must be a 1-D integer "
                         "tensor of class indices, one per input")  # fmt: skip
    reference = copy.deepcopy(model).eval()
    if target is not None:
        try:
            reference.get_submodule(target)
        except AttributeError:
            raise ValueError(f"target {target!r} is not a submodule") from None
    order = _forward_order(reference, xs[0], plan)
    if missing := [n for n in plan if n not in order]:
        raise ValueError(f"layers not called by the forward pass: {missing}")
    if ys is None:
        with torch.no_grad():
            wanted = [_activation(reference, target, x) for x in xs]
    else:
        with torch.no_grad():
            classes = reference(xs[0]).shape[-1]
        if any(y.min() < 0 or y.max() >= classes for y in ys):
            raise ValueError(f"batches: class indices must be in [0, {classes - 1}]")
        wanted = ys

    modes = {n: m.training for n, m in model.named_modules()}
    trainable = {n: p.requires_grad for n, p in model.named_parameters()}
    model.eval()
    try:
        for name in sorted(plan, key=order.index):
            _, kind, rank = plan[name]
            _set(model, name, _build(model.get_submodule(name), kind, rank))
            params = [
                p
                for n in order[order.index(name) + 1 :]
                for k, p in model.get_submodule(n).named_parameters(recurse=False)
                if trainable.get(f"{n}.{k}" if n else k, False)  # shared: once
            ]
            if not params or steps <= 0:
                if after_layer is not None:
                    after_layer(name, model)
                    model.eval()
                continue
            model.requires_grad_(False)
            for p in params:
                p.requires_grad_(True)
            opt = torch.optim.Adam(params, lr=lr)
            data = itertools.cycle(zip(xs, wanted, strict=True))
            for _, (x, y) in zip(range(steps), data, strict=False):
                opt.zero_grad(set_to_none=True)
                out = _activation(model, target, x)
                value = (nn.functional.mse_loss(out, y) if ys is None
                         else nn.functional.cross_entropy(out, y))  # fmt: skip
                value.backward()
                opt.step()
            opt.zero_grad(set_to_none=True)
            if after_layer is not None:
                after_layer(name, model)
                model.eval()  # eval mode throughout, whatever the callback did
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(trainable.get(n, True))
        for n, m in model.named_modules():
            m.training = modes.get(n, m.training)
        for name, (layer, _, _) in plan.items():
            new = model.get_submodule(name)
            if isinstance(new, nn.Sequential):
                new.train(modes[name])
                for m in new:
                    m.weight.requires_grad_(layer.weight.requires_grad)
                    if m.bias is not None:
                        m.bias.requires_grad_(layer.bias.requires_grad)
    return model


def _forward_order(model: nn.Module, x: Tensor, plan: dict) -> list[str]:
    """Paths of the modules holding parameters (and of ``plan``), by first call."""
    order: list[str] = []

    def seen(name: str):
        return lambda *_: None if name in order else order.append(name)

    hooks = [
        m.register_forward_hook(seen(n))
        for n, m in model.named_modules()
        if n in plan or next(m.parameters(recurse=False), None) is not None
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return order


def _activation(model: nn.Module, target: str | None, x: Tensor) -> Tensor:
    """The output of module ``target`` (None: of ``model``) on input ``x``."""
    if target is None:
        return model(x)
    out: list[Tensor] = []
    hook = model.get_submodule(target).register_forward_hook(
        lambda m, i, o: out.append(o)
    )
    try:
        model(x)
    finally:
        hook.remove()
    if not out:
        raise ValueError(f"target {target!r} was not called by the forward pass")
    return out[0]


def decomposition_seconds(layer: Layer, rank: Rank, *, method: str = "auto") -> float:
    """Wall-clock seconds (``time.perf_counter``) of one decomposition of ``layer``."""
    kind = _kind(layer, method)
    rank = _check_rank(layer, rank, kind)
    start = time.perf_counter()
    _build(layer, kind, rank)
    return time.perf_counter() - start
