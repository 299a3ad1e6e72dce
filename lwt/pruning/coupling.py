"""Channel coupling (チャネル結合): which layers read the channels a pruned layer drops.

Removing output channel ``j`` of a layer (the *producer*) is only correct if every
op that reads that channel is shrunk with the same indices. Fang et al. 2023
(DepGraph) call the set of layers that must be pruned together a *group*, and build
a full dependency graph of the network to find it; their library, Torch-Pruning,
handles residual adds, concatenations, grouped convs and more. This module is the
small, readable version that ``structured.prune_filters`` needs: it traces the model
with ``torch.fx``, follows the producer's output forward, and either finds a
*direct chain*

    producer (Conv2d / Linear)
      -> [BatchNorm1d/2d] -> [per-channel ops: activations, pooling, dropout,
         arithmetic with a Python number]*
      -> [flatten(1) / view(N, -1) -> per-element ops*]
      -> consumer (Conv2d with groups=1, or Linear)

or refuses with a :class:`CouplingError` that names the coupling and the fx node:
a residual add (or ``-``, ``*``, ``/`` with another tensor), a concatenation
(``torch.cat``), a grouped or depthwise consumer conv, more than one consumer, the
output being returned by ``forward``, a module called more than once (shared
weights), or any op it cannot follow.

Reference: Fang, Ma, Song, Mi, Wang. DepGraph: Towards Any Structural Pruning.
CVPR 2023 (https://github.com/VainF/Torch-Pruning).
"""

from __future__ import annotations

import builtins
import operator
from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.nn import functional as F

# Ops that act on each channel separately (the channel dimension passes through).
_PER_CHANNEL_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid,
    nn.Softplus, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout,
    nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.LPPool2d,
    nn.Upsample, nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d,
    nn.ReplicationPad2d,
)  # fmt: skip
_PER_CHANNEL_FUNCTIONS = {
    torch.relu, torch.relu_, torch.sigmoid, torch.tanh, torch.abs, torch.neg,
    torch.clamp, torch.clip, operator.neg, operator.pos,
    F.relu, F.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu,
    F.mish, F.hardswish, F.hardsigmoid, F.hardtanh, F.softplus, F.sigmoid, F.tanh,
    F.dropout, F.dropout1d, F.dropout2d, F.alpha_dropout, F.max_pool1d, F.max_pool2d,
    F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.interpolate,
}  # fmt: skip
_PER_CHANNEL_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "abs", "abs_", "neg",
    "clamp", "clamp_", "clip", "clip_", "contiguous", "clone", "detach", "float",
    "half", "bfloat16", "to",
}  # fmt: skip
# Binary arithmetic: per-channel with a Python number, a coupling with another tensor.
_ADDS = {operator.add, operator.iadd, torch.add, "add", "add_"}
_BINARY = (
    dict.fromkeys(_ADDS, "added to")
    | dict.fromkeys(
        [operator.sub, operator.isub, torch.sub, torch.subtract, "sub", "sub_"],
        "combined (by subtraction) with",
    )
    | dict.fromkeys(
        [operator.mul, operator.imul, torch.mul, torch.multiply, "mul", "mul_"],
        "multiplied by",
    )
    | dict.fromkeys(
        [operator.truediv, operator.itruediv, torch.div, torch.divide,
         torch.true_divide, "div", "div_"],
        "divided by",
    )
)  # fmt: skip
_CONCATS = {torch.cat, torch.concat, torch.concatenate, torch.stack}
_METADATA_ATTRS = {"shape", "dtype", "device", "ndim", "is_cuda"}
_METADATA_METHODS = {"size", "dim"}
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


class CouplingError(ValueError):
    """The producer's channels are coupled to something a plain prune cannot follow."""


@dataclass(frozen=True)
class ChannelPath:
    """Where a producer's output channels go, as found by :func:`channel_path`.

    Attributes:
        producer: path of the layer whose output channels would be removed.
        consumer: path of the single Conv2d/Linear that reads them.
        norms: paths of the BatchNorms on the way (normally zero or one).
        flattened: the consumer is a Linear fed through ``flatten(1)``, so it sees
            each channel as ``H·W`` consecutive features.
        via: every module called on the way, in order (for messages).
    """

    producer: str
    consumer: str
    norms: tuple[str, ...]
    flattened: bool
    via: tuple[str, ...]


def trace(model: nn.Module) -> fx.Graph:
    """The ``torch.fx`` graph of ``model.forward`` (symbolic: nothing is run or
    changed).

    Raises:
        CouplingError: the model cannot be traced (e.g. control flow on tensor values).
    """
    try:
        return fx.Tracer().trace(model)
    except Exception as err:  # fx raises many types (TraceError, TypeError...)
        raise CouplingError(
            f"{type(model).__name__} cannot be traced by torch.fx "
            f"({type(err).__name__}: {err}); the graph is needed to check which layers "
            "read the pruned channels. Make forward traceable (no Python control flow "
            "on tensor values) or use Torch-Pruning, which traces with a real input"
        ) from err


def _calls(graph: fx.Graph, target: str) -> list[fx.Node]:
    return [n for n in graph.nodes if n.op == "call_module" and n.target == target]


def _describe(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """Name the source of a tensor: the last module with state, or the node."""
    while True:
        if node.op == "placeholder":
            return f"the model input {node.name!r}"
        if node.op == "get_attr":
            return f"the attribute {node.target!r}"
        if node.op == "call_module":
            m = modules[node.target]
            if (
                next(m.parameters(), None) is not None
                or next(m.buffers(), None) is not None
            ):
                return f"{node.target}'s output"
        if not _is_per_channel(node, modules) or len(node.all_input_nodes) != 1:
            return f"the output of node {node.name!r}"
        node = node.all_input_nodes[0]


def _is_per_channel(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        m = modules[node.target]
        if isinstance(m, nn.PReLU):
            return m.num_parameters == 1
        return isinstance(m, _PER_CHANNEL_MODULES)
    if node.op == "call_function":
        return node.target in _PER_CHANNEL_FUNCTIONS
    return node.op == "call_method" and node.target in _PER_CHANNEL_METHODS


def _flatten_kind(node: fx.Node, modules: dict[str, nn.Module]) -> str | None:
    """``"ok"``: flatten(1) or view(N, -1); ``"bad"``: another reshape; else None."""
    if node.op == "call_module":
        m = modules[node.target]
        if not isinstance(m, nn.Flatten):
            return None
        return "ok" if (m.start_dim, m.end_dim) == (1, -1) else "bad"
    is_flatten = node.target is torch.flatten or (
        node.op == "call_method" and node.target == "flatten"
    )
    if is_flatten and node.op in ("call_function", "call_method"):
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        return "ok" if (start, end) == (1, -1) else "bad"
    is_reshape = node.target is torch.reshape or (
        node.op == "call_method" and node.target in ("view", "reshape")
    )
    if not is_reshape or node.op not in ("call_function", "call_method"):
        return None
    shape = node.args[1:] if node.op == "call_method" else node.args[1:2]
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return "ok" if len(shape) == 2 and shape[1] == -1 else "bad"


def channel_path(
    model: nn.Module, producer: str, *, graph: fx.Graph | None = None
) -> ChannelPath:
    """Follow ``producer``'s output channels to the one layer that consumes them.

    Args:
        model: the network (not changed).
        producer: path of a Conv2d/Linear submodule.
        graph: ``trace(model)``, to reuse one trace for several producers.

    Returns:
        The :class:`ChannelPath` of a direct chain (see the module docstring).

    Raises:
        CouplingError: the path contains a coupling or an op that cannot be followed;
            the message names it and the fx node where it happens.
    """
    graph = trace(model) if graph is None else graph
    modules = dict(model.named_modules())
    calls = _calls(graph, producer)
    if len(calls) != 1:
        raise CouplingError(
            f"{producer} is called {len(calls)} times by forward (as traced by "
            "torch.fx); prune_filters needs exactly one call"
            + (": its weights are shared by several places" if calls else "")
        )
    layout0 = "channels" if isinstance(modules[producer], nn.Conv2d) else "features"
    # Items: (node reached, the value it reads, that value's layout, modules so far)
    todo = [(user, calls[0], layout0, ()) for user in calls[0].users]
    consumers: list[tuple[fx.Node, bool, tuple[str, ...]]] = []
    norms: list[str] = []
    seen: set[fx.Node] = set()
    while todo:
        node, src, layout, via = todo.pop(0)
        if node in seen:
            continue
        seen.add(node)
        where = f"{producer} output" + (f" (through {', '.join(via)})" if via else "")
        at = f"at node {node.name!r}"
        nxt = layout  # the layout of this node's output if it is followed

        if node.op == "output":
            raise CouplingError(
                f"{where} is returned by forward (a model output): pruning it would "
                "change the model's output width"
            )
        others = [a for a in node.all_input_nodes if a is not src]
        if node.op == "call_function" and node.target is builtins.getattr:
            if node.args[1] in _METADATA_ATTRS:
                continue  # reads .shape/.dtype: no data flows on
        if node.op == "call_method" and node.target in _METADATA_METHODS:
            continue
        m = modules.get(node.target) if node.op == "call_module" else None
        key = node.target if node.op != "call_module" else None

        if isinstance(m, (nn.Conv2d, nn.Linear)):
            _check_consumer(node, m, layout, where, at)
            consumers.append((node, layout == "flat", via))
            continue
        if isinstance(m, _NORMS):
            if layout == "flat":
                raise CouplingError(
                    f"{where} is flattened and then normalised by {node.target} {at}: "
                    "a norm after flatten is not supported"
                )
            if len(_calls(graph, node.target)) != 1:
                raise CouplingError(
                    f"norm {node.target} {at} is called more than once (shared)"
                )
            norms.append(node.target)
        elif key in _BINARY and node.op in ("call_function", "call_method"):
            if others:
                residual = key in _ADDS and others[0].op != "get_attr"
                kind = "a residual add" if residual else _name(node)
                raise CouplingError(
                    f"{where} is {_BINARY[key]} {_describe(others[0], modules)} by "
                    f"{kind} {at}: the channels of both operands must stay aligned, "
                    "so prune both sides together or use Torch-Pruning"
                )
        elif node.op == "call_function" and node.target in _CONCATS:
            parts = [_describe(a, modules) for a in others] or ["itself"]
            raise CouplingError(
                f"{where} is concatenated with {', '.join(parts)} by "
                f"{_name(node)} {at}: the consumer's inputs are a slice of the "
                "concatenation (use Torch-Pruning, which tracks concat offsets)"
            )
        elif (kind := _flatten_kind(node, modules)) is not None:
            if kind == "bad":  # (other inputs are sizes, e.g. x.size(0): ints)
                raise CouplingError(
                    f"{where} is reshaped by {_name(node)} {at}: only flatten(1) or "
                    "view(N, -1) into a Linear is supported"
                )
            nxt = "flat" if layout == "channels" else layout
        elif _is_per_channel(node, modules):
            if others:
                raise CouplingError(
                    f"{where} is combined with {_describe(others[0], modules)} by "
                    f"{_name(node)} {at}: not supported (use Torch-Pruning)"
                )
        else:
            raise CouplingError(
                f"{where} feeds {_name(node, m)} {at}, which prune_filters cannot "
                "follow (it follows only norms, per-channel activations, pooling, "
                "dropout, arithmetic with numbers and flatten(1)); use Torch-Pruning"
            )
        step = via + ((node.target,) if node.op == "call_module" else ())
        todo.extend((user, node, nxt, step) for user in node.users)

    if not consumers:
        raise CouplingError(f"{producer} output reaches no Conv2d or Linear layer")
    if len(consumers) > 1:
        names = [n.target for n, _, _ in consumers]
        raise CouplingError(
            f"{producer} output feeds more than one layer: {names}; all of them would "
            "need their inputs pruned (a coupling prune_filters does not handle; "
            "use Torch-Pruning)"
        )
    node, flattened, via = consumers[0]
    return ChannelPath(producer, node.target, tuple(norms), flattened, via)


def _name(node: fx.Node, module: nn.Module | None = None) -> str:
    if module is not None:
        return f"{node.target} ({type(module).__name__})"
    target = node.target if isinstance(node.target, str) else node.target.__name__
    return f"{target!r}" if node.op == "call_method" else f"{target}"


def _check_consumer(
    node: fx.Node,
    m: nn.Conv2d | nn.Linear,
    layout: str,
    where: str,
    at: str,
) -> None:
    path = node.target
    if isinstance(m, nn.Conv2d) and m.groups != 1:
        kind = "depthwise" if m.groups == m.in_channels else "grouped"
        raise CouplingError(
            f"{where} is read by {kind} conv {path} (groups={m.groups}) {at}: each "
            "filter group reads only its own input channels, so its outputs are "
            "coupled to its inputs; prune them together or use Torch-Pruning"
        )
    if isinstance(m, nn.Conv2d) and layout != "channels":
        raise CouplingError(
            f"{where} reaches Conv2d {path} {at} as flat features, not as channels"
        )
    if isinstance(m, nn.Linear) and layout == "channels":
        raise CouplingError(
            f"{where} reaches Linear {path} {at} without flatten(1): the Linear acts "
            "on the last (width) dimension, not on the channels"
        )
    n_calls = sum(
        1 for n in node.graph.nodes if n.op == "call_module" and n.target == path
    )
    if n_calls != 1:
        raise CouplingError(
            f"consumer {path} is called {n_calls} times by forward (shared weights): "
            "its inputs also come from elsewhere"
        )
