"""Fake-quantized models: ``FakeQuant`` modules, BatchNorm folding, PTQ and QAT prep.

A model is prepared for quantization by folding BatchNorm into the convolutions
(``W' = W γ/σ``, ``b' = (b - μ)γ/σ + β``), fake-quantizing every weight through a
``torch.nn.utils.parametrize`` parametrization and inserting activation quantizers
with ``torch.fx`` where an integer engine would keep a tensor in 8 bits. Calibration
(PTQ) freezes the activation ranges; quantization-aware training then fine-tunes
through the quantizers with the straight-through estimator (Jacob et al. 2018).

Reference: Jacob et al. Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference. CVPR 2018.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn
from torch.fx import GraphModule, Node
from torch.fx.experimental.optimization import fuse
from torch.nn.utils import parametrize

from .observers import make_observer
from .primitives import fake_quantize, inputs_of, qparams, qrange


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
        *,
        symmetric: bool = False,
        axis: int | None = None,
        observer: str = "minmax",
        dynamic: bool = False,
    ) -> None:
        super().__init__()
        qrange(bits, signed=symmetric, narrow=symmetric)
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
        self.scale, self.zero_point = qparams(
            lo, hi, self.bits, symmetric=self.symmetric
        )

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
            bits=self.bits,
            symmetric=self.symmetric,
            axis=self.axis,
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
    *,
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
        observer: activation range observer (see ``observers.OBSERVERS``).
        weight_observer: weight range observer.
    """
    gm = fold_batchnorm(model)
    for m in list(gm.modules()):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fq = FakeQuant(
                weight_bits,
                symmetric=True,
                axis=0 if per_channel else None,
                observer=weight_observer,
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


def set_mode(model: nn.Module, *, observe: bool, quantize: bool) -> nn.Module:
    """Switch every activation quantizer to observing and/or quantizing."""
    for fq in activation_quantizers(model):
        fq.observing, fq.enabled = observe, quantize
    return model


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable) -> nn.Module:
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
        model(inputs_of(batch))
    for fq in activation_quantizers(model):
        fq.freeze()
    return set_mode(model, observe=False, quantize=True)


def qat(model: nn.Module, *, retrain: Callable[[nn.Module], object]) -> nn.Module:
    """Quantization-aware training of a calibrated model from ``quantize_model``.

    The activation ranges stay frozen and ``retrain(model)`` trains the float
    ("shadow") weights through the fake quantizers, whose gradient is the
    straight-through estimator; the weight ranges follow the weights. Start from the
    trained, PTQ-calibrated model: QAT is a fine-tuning method (Jacob et al. 2018).

    Args:
        model: a calibrated model from ``quantize_model``.
        retrain: trains ``model`` in place, e.g. a few epochs of SGD with a small,
            annealed rate (``lwt.train.finetune``).

    Returns:
        ``model``, trained in place, in eval mode.
    """
    if not any(isinstance(m, FakeQuant) for m in model.modules()):
        raise TypeError("model has no FakeQuant modules: use quantize_model first")
    set_mode(model, observe=False, quantize=True)
    retrain(model)
    return model.eval()


def to_float(model: nn.Module) -> nn.Module:
    """The float model a fake-quantized one simulates, for an int8 converter.

    A copy of ``model`` (from ``quantize_model``, after calibration or QAT) whose
    weights are baked onto their grid, ``W = S_w q_w`` (the parametrization removed,
    its quantized value kept), and whose activation quantizers pass tensors through
    unchanged. An int8 converter (``lwt.deploy.quantize_onnx``) re-derives the same
    symmetric per-channel weight grid from these weights, so the QAT-trained integers
    are the ones deployed; it calibrates the activation ranges again.
    """
    if not any(isinstance(m, FakeQuant) for m in model.modules()):
        raise TypeError("model has no FakeQuant modules: use quantize_model first")
    out = copy.deepcopy(model).eval()
    for m in out.modules():
        if parametrize.is_parametrized(m) and not (
            parametrize.is_parametrized(m, "weight") and len(m.parametrizations) == 1
        ):
            raise TypeError(
                f"{type(m).__name__}: only a parametrized weight is expected"
            )
        if parametrize.is_parametrized(m, "weight"):
            with torch.no_grad():
                baked = m.weight.detach().clone()
            # Not parametrize.remove_parametrizations: a deep copy shares the
            # dynamically made ``Parametrized<Layer>`` class with ``model``, and
            # removing
            # deletes the class's ``weight`` property, breaking ``model`` too. Turn this
            # instance back into its plain layer class instead.
            del m._modules["parametrizations"]
            m.__class__ = type(m).__bases__[0]
            m.weight = nn.Parameter(baked)
    return set_mode(out, observe=False, quantize=False)


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
