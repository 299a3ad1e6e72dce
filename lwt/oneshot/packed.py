"""The packed file of a model with :class:`~.quantized.GroupQuantized` layers, whose
bytes are the real size.

File (``save_packed`` / ``load_packed``)::

    b"LWTQ" · version (u8) · header length (u32, little-endian) · JSON header · payload

The payload holds each quantized layer's codes packed ``b`` bits each
(``groupwise.pack_codes``), its fp16 scales, its zeros packed ``b`` bits each and its
AWQ scales; every other state-dict tensor follows raw (float ones as fp16 by default).
The header names every piece with its offset and length; a reader checks all of them
against the shapes and the file's length before it allocates anything.
"""

from __future__ import annotations

import copy
import json
import math
import struct
from pathlib import Path

import torch
from torch import Tensor, nn

from .calibration import set_module
from .groupwise import dequantize_groups, pack_codes, unpack_codes
from .quantized import GroupQuantized

MAGIC, VERSION = b"LWTQ", 1
_DTYPES = {
    "float16": torch.float16,
    "float32": torch.float32,
    "int64": torch.int64,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
_MAX_HEADER = 1 << 24


def _tensor_bytes(t: Tensor) -> bytes:
    return t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()


def to_packed(model: nn.Module, *, half: bool = True) -> bytes:
    """The packed file of ``model`` (with :class:`GroupQuantized` layers) as bytes.
    ``half``: other float tensors stored as fp16."""
    entries, chunks, offset = [], [], 0

    def put(data: bytes) -> list[int]:
        nonlocal offset
        chunks.append(data)
        offset += len(data)
        return [offset - len(data), len(data)]

    quantized = {
        n: m for n, m in model.named_modules() if isinstance(m, GroupQuantized)
    }
    for name, m in quantized.items():
        s = None if m.in_scale is None else put(_tensor_bytes(m.in_scale))
        entries.append({
            "name": name, "kind": m.kind, "shape": list(m.shape), "bits": m.bits,
            "group_size": m.group_size, "codes": put(pack_codes(m.codes, m.bits)),
            "scale": put(_tensor_bytes(m.scale)),
            "zero": put(pack_codes(m.zero, m.bits)), "in_scale": s})  # fmt: skip
    skip = {
        f"{n}.{b}" for n in quantized for b in ("codes", "scale", "zero", "in_scale")
    }
    for key, t in model.state_dict().items():
        if key in skip:
            continue
        if t.is_floating_point() and half:
            t = t.half()
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype not in _DTYPES:
            raise TypeError(f"{key}: dtype {t.dtype} cannot be stored")
        data = put(_tensor_bytes(t))
        entries.append({"name": key, "kind": "tensor", "dtype": dtype,
                        "shape": list(t.shape), "data": data})  # fmt: skip
    header = json.dumps({"version": VERSION, "entries": entries},
                        separators=(",", ":")).encode()  # fmt: skip
    prefix = MAGIC + bytes([VERSION]) + struct.pack("<I", len(header)) + header
    return prefix + b"".join(chunks)


def save_packed(model: nn.Module, path: str | Path, *, half: bool = True) -> int:
    """Write :func:`to_packed` of ``model`` to ``path``; returns the file's bytes."""
    blob = to_packed(model, half=half)
    Path(path).write_bytes(blob)
    return len(blob)


def _read_header(raw: bytes) -> tuple[list[dict], int]:
    if len(raw) < 9 or raw[:4] != MAGIC:
        raise ValueError("not a packed lwt file (bad magic)")
    if raw[4] != VERSION:
        raise ValueError(f"packed file version {raw[4]} is not supported ({VERSION})")
    (n,) = struct.unpack("<I", raw[5:9])
    if n > min(_MAX_HEADER, len(raw) - 9):
        raise ValueError(f"header length {n} exceeds the file ({len(raw)} bytes)")
    try:
        entries = json.loads(raw[9 : 9 + n])["entries"]
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise ValueError(f"packed file header is not valid: {e}") from None
    return entries, 9 + n


def _span(e: dict, key: str, need: int, payload: int) -> None:
    span = e.get(key)
    ok = (
        isinstance(span, list)
        and len(span) == 2
        and all(isinstance(v, int) and v >= 0 for v in span)
    )
    if not ok or span[1] != need or span[0] + span[1] > payload:
        raise ValueError(
            f"{e.get('name')}: {key} should be {need} bytes inside the "
            f"{payload}-byte payload, header says {span}"
        )


_MAX_DIM = 1 << 31


def _validate(e: dict, payload: int) -> None:
    name = e.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"packed file header: an entry's name must be a string, "
                         f"got {name!r}")  # fmt: skip
    shape, kind = e.get("shape"), e.get("kind")
    low = 1 if kind in ("linear", "conv2d") else 0
    if not (isinstance(shape, list) and len(shape) <= 8 and all(
            type(d) is int and low <= d < _MAX_DIM for d in shape)):  # fmt: skip
        raise ValueError(f"{name}: bad shape {shape!r} (ints in [{low}, 2^31))")
    n = math.prod(shape)
    if kind == "tensor":
        if e.get("dtype") not in _DTYPES:
            raise ValueError(f"{name}: unknown dtype {e.get('dtype')!r}")
        _span(e, "data", n * _DTYPES[e["dtype"]].itemsize, payload)
        return
    if kind not in ("linear", "conv2d") or len(shape) != (2 if kind == "linear" else 4):
        raise ValueError(f"{name}: bad layer entry (kind {kind!r}, shape {shape})")
    bits, g = e.get("bits"), e.get("group_size")
    if type(bits) is not int or not 2 <= bits <= 8:
        raise ValueError(f"{name}: bits must be an int in [2, 8], got {bits!r}")
    cols = math.prod(shape[1:])
    if type(g) is not int or g < 1 or cols % g:
        raise ValueError(f"{name}: group_size {g!r} does not divide {cols} columns")
    groups = n // g
    _span(e, "codes", math.ceil(n * bits / 8), payload)
    _span(e, "scale", 2 * groups, payload)
    _span(e, "zero", math.ceil(groups * bits / 8), payload)
    if e.get("in_scale") is not None:
        if kind != "linear":
            raise ValueError(f"{name}: in_scale (AWQ) applies to linear layers only")
        _span(e, "in_scale", 2 * cols, payload)


def _entries(raw: bytes) -> tuple[list[dict], int]:
    """The header's entries, each checked against the payload's length; names unique,
    and no tensor entry inside a quantized layer but its bias."""
    entries, start = _read_header(raw)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError("packed file header is not valid: entries")
    for e in entries:
        _validate(e, len(raw) - start)
    names = [e["name"] for e in entries]
    if len(set(names)) != len(names):
        raise ValueError("packed file header names an entry twice")
    layers = {e["name"] for e in entries if e["kind"] != "tensor"}
    inside = [
        n for n in names if n.rpartition(".")[0] in layers and not n.endswith(".bias")
    ]
    if inside:
        raise ValueError(
            f"packed file header: {inside[:3]} lie inside quantized layers "
            "(only their bias is a tensor entry)"
        )
    return entries, start


def _pieces(raw: bytes, start: int, e: dict) -> dict[str, Tensor | None]:
    """One entry's tensors: ``data`` for a tensor; ``codes``, ``scale``, ``zero``,
    ``in_scale`` for a quantized layer."""

    def piece(span: list[int]) -> bytes:
        return raw[start + span[0] : start + span[0] + span[1]]

    def tensor(span: list[int], dtype: torch.dtype, shape: list[int]) -> Tensor:
        data = bytearray(piece(span))
        if not data:
            return torch.empty(shape, dtype=dtype)
        flat = torch.frombuffer(data, dtype=torch.uint8).view(dtype)
        return flat.reshape(shape).clone()

    if e["kind"] == "tensor":
        return {"data": tensor(e["data"], _DTYPES[e["dtype"]], e["shape"])}
    bits, rows = e["bits"], e["shape"][0]
    cols = math.prod(e["shape"][1:])
    groups = [rows, cols // e["group_size"]]
    s = e.get("in_scale")
    return {
        "codes": unpack_codes(piece(e["codes"]), bits, rows * cols).reshape(rows, cols),
        "zero": unpack_codes(piece(e["zero"]), bits, math.prod(groups)).reshape(groups),
        "scale": tensor(e["scale"], torch.float16, groups),
        "in_scale": None if s is None else tensor(s, torch.float16, [cols]),
    }


def _raw(source: str | Path | bytes) -> bytes:
    return bytes(source) if isinstance(source, (bytes, bytearray)) else (
        Path(source).read_bytes())  # fmt: skip


def packed_state_dict(source: str | Path | bytes) -> dict[str, Tensor]:
    """The float state dict a packed file decodes to: each quantized layer's weight
    as ``Ŵ = S (q − Z) / s`` (float32), every other tensor as stored. A float model
    loaded with it computes what the quantized model computes."""
    raw = _raw(source)
    entries, start = _entries(raw)
    state = {}
    for e in entries:
        parts = _pieces(raw, start, e)
        if e["kind"] == "tensor":
            state[e["name"]] = parts["data"]
            continue
        w = dequantize_groups(parts["codes"], parts["scale"].float(),
                              parts["zero"].float(), e["group_size"])  # fmt: skip
        if parts["in_scale"] is not None:
            w = w / parts["in_scale"].float()[None, :]
        state[e["name"] + ".weight"] = w.reshape(e["shape"])
    return state


def load_packed(source: str | Path | bytes, model: nn.Module) -> nn.Module:
    """A copy of ``model`` (a float model of the same architecture) with the file's
    :class:`GroupQuantized` layers and tensors; ``model`` is not changed. The header
    is checked against the file and the model before anything is allocated."""
    raw = _raw(source)
    entries, start = _entries(raw)
    modules, state = dict(model.named_modules()), model.state_dict()
    for e in entries:
        name, shape = e["name"], tuple(e["shape"])
        if e["kind"] == "tensor":
            if name not in state or tuple(state[name].shape) != shape:
                raise ValueError(f"{name}: not a tensor of shape {shape} in the model")
            continue
        layer = modules.get(name)
        cls = nn.Linear if e["kind"] == "linear" else nn.Conv2d
        if not isinstance(layer, cls) or tuple(layer.weight.shape) != shape:
            raise ValueError(f"{name}: the model has no {cls.__name__} of {shape}")
    covered = {e["name"] for e in entries if e["kind"] == "tensor"} | {
        f"{e['name']}.weight" for e in entries if e["kind"] != "tensor"}  # fmt: skip
    if missing := [k for k in state if k not in covered]:
        raise ValueError(f"the file does not hold {missing[:3]} "
                         f"({len(missing)} tensors of the model in all)")  # fmt: skip
    out = copy.deepcopy(model)
    tensors = {}
    for e in entries:
        parts = _pieces(raw, start, e)
        if e["kind"] == "tensor":
            tensors[e["name"]] = parts["data"]
            continue
        q = GroupQuantized(out.get_submodule(e["name"]), parts["codes"], parts["scale"],
                           parts["zero"], bits=e["bits"], group_size=e["group_size"],
                           in_scale=parts["in_scale"])  # fmt: skip
        set_module(out, e["name"], q)
    with torch.no_grad():
        current = out.state_dict()
        for key, t in tensors.items():
            current[key].copy_(t.to(current[key].dtype))
    return out
