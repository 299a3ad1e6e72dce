"""Quantization (量子化): fewer bits for weights and activations.

Uniform affine quantization (Jacob et al. 2018) stores a real value ``r`` as an
integer ``q`` of ``b`` bits with a scale ``S > 0`` and an integer zero point ``Z``::

    r = S (q - Z),        q = clamp(round(r / S) + Z, q_min, q_max)

*Asymmetric* quantization maps a range ``[lo, hi]`` (widened to contain 0, so that
0.0 is exact) onto ``[0, 2^b - 1]``: ``S = (hi - lo) / (2^b - 1)``,
``Z = round(-lo / S)``. *Symmetric* quantization uses ``Z = 0`` and the signed range
``[-(2^(b-1) - 1), 2^(b-1) - 1]``: ``S = max(|lo|, |hi|) / (2^(b-1) - 1)``. Ranges are
per tensor or per channel (one ``S, Z`` per output channel of a weight).

Fake quantization ``x -> S (q(x) - Z)`` simulates the rounding in float; in training
its gradient is the straight-through estimator (Bengio et al. 2013): 1 where ``x`` is
inside the clipping range, 0 outside.

References: Jacob et al. Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference. CVPR 2018. Krishnamoorthi. Quantizing deep
convolutional networks for efficient inference: A whitepaper. arXiv:1806.08342, 2018.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.fx import GraphModule, Node
from torch.fx.experimental.optimization import fuse
from torch.nn.utils import parametrize

from . import train as training
from .observers import make_observer


# ------------------------------------------------------------------ primitives
def qrange(bits: int, signed: bool = False, narrow: bool = False) -> tuple[int, int]:
    """Integer range of ``bits`` bits: unsigned ``[0, 2^b - 1]``, signed
    ``[-2^(b-1), 2^(b-1) - 1]``; ``narrow`` drops the most negative value."""
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise TypeError(f"bits must be an int, got {type(bits).__name__}")
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be in [1, 16], got {bits}")
    if not signed:
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)) + int(narrow), 2 ** (bits - 1) - 1


def qparams(
    lo: Tensor | float, hi: Tensor | float, bits: int, symmetric: bool = False
) -> tuple[Tensor, Tensor]:
    """Scale ``S`` and zero point ``Z`` mapping ``[lo, hi]`` onto ``bits`` bits.

    Asymmetric: ``S = (hi - lo) / (q_max - q_min)``, ``Z = q_min - round(lo / S)``
    after widening the range to contain 0. Symmetric (signed, narrow range):
    ``S = max(|lo|, |hi|) / q_max``, ``Z = 0``. ``lo``/``hi`` may be per-channel
    vectors; the results then have the same shape.
    """
    lo = torch.as_tensor(lo, dtype=torch.float32).clamp(max=0)
    hi = torch.as_tensor(hi, dtype=torch.float32).clamp(min=0)
    qmin, qmax = qrange(bits, signed=symmetric, narrow=symmetric)
    if symmetric:
        if qmax < 1:
            raise ValueError("symmetric quantization needs bits >= 2")
        scale = torch.maximum(-lo, hi) / qmax
    else:
        scale = (hi - lo) / (qmax - qmin)
    scale = scale.clamp(min=torch.finfo(torch.float32).eps)  # all-zero range
    if symmetric:
        return scale, torch.zeros_like(scale, dtype=torch.int32)
    zero = (qmin - torch.round(lo / scale)).clamp(qmin, qmax).to(torch.int32)
    return scale, zero


def _view(param: Tensor | float, x: Tensor, axis: int | None, name: str) -> Tensor:
    """``param`` as a tensor broadcasting along ``axis`` of ``x`` (per channel)."""
    p = torch.as_tensor(param, device=x.device)
    if axis is None:
        if p.numel() != 1:
            raise ValueError(f"{name} has {p.numel()} values; per-tensor needs 1")
        return p.reshape(())
    if not -x.dim() <= axis < x.dim():
        raise ValueError(f"axis must be in [{-x.dim()}, {x.dim() - 1}], got {axis}")
    if p.numel() != x.shape[axis]:
        raise ValueError(
            f"{name} has {p.numel()} values but axis {axis} has {x.shape[axis]}"
        )
    shape = [1] * x.dim()
    shape[axis] = -1
    return p.reshape(shape)


def _checked(x: Tensor, scale: Tensor | float, zero_point: Tensor | float, axis):
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a Tensor, got {type(x).__name__}")
    if x.numel() == 0:
        raise ValueError("x is empty")
    s = _view(scale, x, axis, "scale").to(x.dtype)
    if not bool((s > 0).all()):
        raise ValueError("scale must be > 0")
    return s, _view(zero_point, x, axis, "zero_point").to(x.dtype)


def quantize(
    x: Tensor,
    scale: Tensor | float,
    zero_point: Tensor | float,
    bits: int = 8,
    signed: bool = False,
    axis: int | None = None,
    narrow: bool = False,
) -> Tensor:
    """Integers ``q = clamp(round(x / S) + Z, q_min, q_max)`` (int32 tensor).

    Rounds half to even (``torch.round``) and, like torch's kernels, multiplies by
    ``1/S`` instead of dividing, so results equal ``torch.fake_quantize_*``.
    """
    qmin, qmax = qrange(bits, signed, narrow)
    s, z = _checked(x, scale, zero_point, axis)
    return _codes(x, s, z).clamp(qmin, qmax).to(torch.int32)


def _codes(x: Tensor, scale: Tensor, zero: Tensor) -> Tensor:
    """Unclamped ``round(x / S) + Z``, multiplying by ``1/S`` as torch's kernels do."""
    return torch.round(x * (1.0 / scale)) + zero


def dequantize(
    q: Tensor,
    scale: Tensor | float,
    zero_point: Tensor | float,
    axis: int | None = None,
) -> Tensor:
    """Reals ``r = S (q - Z)``."""
    s, z = _checked(q.float(), scale, zero_point, axis)
    return s * (q.float() - z)


class _FakeQuantSTE(torch.autograd.Function):
    """``S (clamp(round(x/S) + Z) - Z)``; gradient 1 inside the range, 0 outside."""

    @staticmethod
    def forward(ctx, x, scale, zero, qmin, qmax):  # noqa: ANN001, D102
        q = _codes(x, scale, zero)
        ctx.save_for_backward((q >= qmin) & (q <= qmax))
        return (q.clamp(qmin, qmax) - zero) * scale

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, D102
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None, None


def fake_quantize(
    x: Tensor,
    scale: Tensor | float,
    zero_point: Tensor | float,
    bits: int = 8,
    signed: bool = False,
    axis: int | None = None,
    narrow: bool = False,
) -> Tensor:
    """``dequantize(quantize(x))`` in float, differentiable with the
    straight-through estimator (gradient passed only inside the clipping range)."""
    qmin, qmax = qrange(bits, signed, narrow)
    s, z = _checked(x, scale, zero_point, axis)
    return _FakeQuantSTE.apply(x, s, z, qmin, qmax)


# ------------------------------------------------------------------ modules
class FakeQuant(nn.Module):
    """Observe a tensor's range, then fake-quantize it to ``bits`` bits.

    Args:
        bits: bit width in [1, 16].
        symmetric: signed symmetric (weights) instead of unsigned asymmetric.
        axis: per-channel axis (weights: 0), None for per-tensor.
        observer: ``"minmax"``, ``"moving"``, ``"percentile"`` or ``"mse"``.
        dynamic: recompute the range from every input (weights during QAT)
            instead of freezing it after calibration (activations).
    """

    def __init__(
        self,
        bits: int = 8,
        symmetric: bool = False,
        axis: int | None = None,
        observer: str = "minmax",
        dynamic: bool = False,
    ) -> None:
        super().__init__()
        qrange(bits, symmetric, symmetric)
        self.bits, self.symmetric, self.axis, self.dynamic = (
            bits,
            symmetric,
            axis,
            dynamic,
        )
        self.observer = make_observer(observer, axis)
        self.observing, self.enabled = not dynamic, dynamic
        self.register_buffer("scale", torch.ones(1), persistent=not dynamic)
        self.register_buffer(
            "zero_point", torch.zeros(1, dtype=torch.int32), persistent=not dynamic
        )

    def freeze(self) -> None:
        """Set ``scale``/``zero_point`` from the observed range."""
        lo, hi = self.observer.range(self.bits, self.symmetric)
        self.scale, self.zero_point = qparams(lo, hi, self.bits, self.symmetric)

    def forward(self, x: Tensor) -> Tensor:
        if self.dynamic:
            self._refresh(x)
        elif self.observing:
            self.observer(x)
        if not self.enabled:
            return x
        return fake_quantize(
            x,
            self.scale,
            self.zero_point,
            self.bits,
            self.symmetric,
            self.axis,
            narrow=self.symmetric,
        )

    def _refresh(self, x: Tensor) -> None:
        """Dynamic range: recomputed whenever ``x`` is a new or changed tensor (every
        optimizer step changes the weight in place, which bumps its version)."""
        key = (x.data_ptr(), x._version, tuple(x.shape))
        if key != getattr(self, "_seen", None):
            self.observer.reset()
            self.observer(x)
            self.freeze()
            self._seen = key

    def extra_repr(self) -> str:
        kind = "symmetric" if self.symmetric else "asymmetric"
        per = "per-tensor" if self.axis is None else f"per-channel(axis={self.axis})"
        return f"bits={self.bits}, {kind}, {per}"


# ------------------------------------------------------------------ models
def fold_batchnorm(model: nn.Module) -> GraphModule:
    """A copy of ``model`` (eval mode) with every BatchNorm folded into its conv.

    ``W' = W γ / σ``, ``b' = (b - μ) γ / σ + β`` with ``σ = sqrt(var + ε)``
    (Jacob et al. 2018 Sec. 3.2), via ``torch.fx.experimental.optimization.fuse``.
    """
    return fuse(copy.deepcopy(model).eval())


_PRODUCERS = (nn.Conv2d, nn.Linear, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
_PRODUCER_FNS = {operator.add, torch.add, nn.functional.adaptive_avg_pool2d}
_RELU_FNS = {torch.relu, nn.functional.relu}


def _is(gm: GraphModule, node: Node, modules: tuple, fns: set) -> bool:
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), modules)
    return node.op in ("call_function", "call_method") and (
        node.target in fns or node.target in {f.__name__ for f in fns}
    )


def quantize_model(
    model: nn.Module,
    weight_bits: int = 8,
    act_bits: int | None = 8,
    per_channel: bool = True,
    observer: str = "minmax",
    weight_observer: str = "minmax",
) -> GraphModule:
    """A fake-quantized copy of ``model`` for PTQ and QAT.

    BatchNorm is folded; every Conv2d/Linear weight is fake-quantized, symmetric,
    per output channel (or per tensor), through a ``torch.nn.utils.parametrize``
    parametrization; activations are fake-quantized (asymmetric, per tensor) at the
    input and after every conv/linear, add and average pool, after the ReLU that
    follows them if any: the tensors an int8 engine keeps in 8 bits. Calibrate the
    activation ranges with ``calibrate`` before use.

    Args:
        model: a float model; not changed.
        weight_bits: weight bit width (>= 2).
        act_bits: activation bit width, or None to keep activations in float.
        per_channel: one scale per output channel of each weight.
        observer: activation range observer (see ``lwt.observers``).
        weight_observer: weight range observer.
    """
    gm = fold_batchnorm(model)
    for m in list(gm.modules()):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fq = FakeQuant(
                weight_bits,
                True,
                0 if per_channel else None,
                weight_observer,
                dynamic=True,
            )
            parametrize.register_parametrization(m, "weight", fq)
    if act_bits is not None:
        _insert_activation_quant(gm, act_bits, observer)
    return gm


def _insert_activation_quant(gm: GraphModule, bits: int, observer: str) -> None:
    graph, count = gm.graph, 0
    for node in list(graph.nodes):
        if not (node.op == "placeholder" or _is(gm, node, _PRODUCERS, _PRODUCER_FNS)):
            continue
        users = list(node.users)
        if len(users) == 1 and _is(gm, users[0], (nn.ReLU,), _RELU_FNS):
            node = users[0]
        name = f"act_quant{count}"
        count += 1
        gm.add_submodule(name, FakeQuant(bits, observer=observer))
        with graph.inserting_after(node):
            q = graph.call_module(name, (node,))
        node.replace_all_uses_with(q, delete_user_cb=lambda user, q=q: user is not q)
    graph.lint()
    gm.recompile()


def activation_quantizers(model: nn.Module) -> list[FakeQuant]:
    """The (non-dynamic) activation FakeQuant modules of ``model``."""
    return [m for m in model.modules() if isinstance(m, FakeQuant) and not m.dynamic]


def set_mode(model: nn.Module, observe: bool, quantize: bool) -> nn.Module:
    """Switch every activation quantizer to observing and/or quantizing."""
    for fq in activation_quantizers(model):
        fq.observing, fq.enabled = observe, quantize
    return model


@torch.no_grad()
def calibrate(model: nn.Module, batches) -> nn.Module:  # noqa: ANN001
    """PTQ calibration: run float activations through the observers, then freeze
    every activation range and turn quantization on.

    Args:
        model: from ``quantize_model``.
        batches: input tensors or ``(input, label)`` pairs (a few hundred images).
    """
    set_mode(model.eval(), observe=True, quantize=False)
    for fq in activation_quantizers(model):
        fq.observer.reset()
    for batch in batches:
        model(batch[0] if isinstance(batch, (tuple, list)) else batch)
    for fq in activation_quantizers(model):
        fq.freeze()
    return set_mode(model, observe=False, quantize=True)


def qat(
    model: nn.Module,
    loader: Iterable,
    epochs: int,
    lr: float,
    weight_decay: float = 0.0,
    quiet: bool = True,
) -> nn.Module:
    """Quantization-aware training of a calibrated model from ``quantize_model``.

    SGD (momentum 0.9) through the fake quantizers, whose gradient is the
    straight-through estimator, with the rate cosine-annealed from ``lr`` to 0
    (start from the trained, PTQ-calibrated model: QAT is a fine-tuning method).
    Returns ``model`` (trained in place) in eval mode.
    """
    opt = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * len(loader))
    training.train(model, loader, epochs, opt, sched, quiet=quiet)
    return model.eval()


def layer_quantizers(
    model: GraphModule, name: str
) -> tuple[FakeQuant, FakeQuant, bool]:
    """The activation quantizers before and after layer ``name`` of a model from
    ``quantize_model``, and whether a ReLU sits between the layer and the latter."""
    node = next(
        (n for n in model.graph.nodes if n.op == "call_module" and n.target == name),
        None,
    )
    if node is None:
        raise ValueError(f"{name!r} is not a layer called in the model's graph")
    user = next(iter(node.users))
    relu = _is(model, user, (nn.ReLU,), _RELU_FNS)
    after = next(iter(user.users)) if relu else user
    found = []
    for n in (node.args[0], after):
        mod = model.get_submodule(n.target) if n.op == "call_module" else None
        if not isinstance(mod, FakeQuant):
            raise ValueError(f"{name!r} is not between two activation quantizers")
        found.append(mod)
    return found[0], found[1], relu
