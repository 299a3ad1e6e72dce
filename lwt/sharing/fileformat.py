"""One compressed file (``.lwtc``) for a pruned, weight-shared model.

Every float tensor with 2+ dimensions (conv and linear weights) is *coded*: its
nonzeros are located by relative indices (:mod:`.sparse_index`) and their values are
either cluster indices into a codebook (``shared=True``: the tensor must hold at most
2^16 distinct nonzero values, e.g. after :func:`.kmeans.share_weights`) or raw
float32. Every other tensor (biases, buffers) is stored *raw*; a float tensor that
float16 represents exactly is stored in float16. Each symbol stream is written with
whichever is smaller: fixed width, or a canonical Huffman code (:mod:`.huffman`) whose
table — the lengths, never a tree — is counted in the file.

Layout (little-endian)::

    b"LWTC" | version u8 | header length u32 | zlib(JSON header) | streams … | crc32 u32

The header (deflated: it is mostly repeated key names) names each tensor, its shape
and dtype, how it is stored, and for a coded tensor the scan order (``row``: C order;
``col``: C order of ``w.reshape(out, -1).T``, i.e. CSR vs CSC) and the index width;
the symbol streams follow (:mod:`.streams`). Decoding checks the magic, the version,
the CRC-32, every header field (before anything is allocated) and every length, so a
truncated, corrupted or crafted file raises ``ValueError`` instead of giving a wrong
model; decoding is exact in value (a pruned zero, −0.0 in ``weight_orig * mask``,
comes back as +0.0: the same number).
"""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import torch
from torch import Tensor, nn

from .sparse_index import positions, relative_indices
from .streams import Reader, stream_bytes, write_stream

MAGIC, VERSION = b"LWTC", 1
_DTYPES = {"float32": np.float32, "float16": np.float16, "int64": np.int64,
           "int32": np.int32, "uint8": np.uint8, "bool": np.bool_}  # fmt: skip


def round_to_float16(model: nn.Module) -> nn.Module:
    """Round every float parameter to its nearest float16 value (in place; the dtype
    stays float32), so that :func:`compress` stores codebooks and biases in 2 bytes.
    Measure the accuracy after this step: it is the model the file holds."""
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point():
                p.copy_(p.half().to(p.dtype))
    return model


def plain_state(model: nn.Module) -> dict[str, Tensor]:
    """The state dict, in order, with every parametrization (e.g. shared weights) and
    ``torch.nn.utils.prune`` mask folded into the tensor it computes."""
    state = model.state_dict()
    out = {}
    for key, t in state.items():
        head, sep, tail = key.partition("parametrizations.")
        if sep and (head == "" or head.endswith(".")):
            name, _, rest = tail.partition(".")
            if rest == "original":  # one entry per parametrized tensor
                owner = model.get_submodule(head[:-1]) if head else model
                out[head + name] = getattr(owner, name).detach().clone()
            continue
        if key.endswith("_mask") and key[:-5] + "_orig" in state:
            continue
        if key.endswith("_orig") and key[:-5] + "_mask" in state:
            key, t = key[:-5], t * state[key[:-5] + "_mask"]
        out[key] = t.detach().clone()
    return out


def _raw(t: Tensor) -> tuple[str, bytes]:
    a = t.detach().cpu().numpy()
    if t.is_floating_point() and torch.equal(t.half().to(t.dtype), t):
        a = a.astype(np.float16)
    name = a.dtype.name
    if name not in _DTYPES:
        raise TypeError(f"cannot store dtype {t.dtype}")
    return name, a.astype(a.dtype.newbyteorder("<")).tobytes()


def _scan(t: Tensor, order: str) -> np.ndarray:
    m = t.detach().cpu().reshape(t.shape[0], -1)
    return (m if order == "row" else m.T).contiguous().numpy().ravel()


def _index_plan(flat: np.ndarray, index_bits: int | None, use_huffman: bool):
    widths = range(1, 17) if index_bits is None else (index_bits,)
    plans = [(relative_indices(flat != 0, g), g) for g in widths]
    return min(
        plans, key=lambda p: stream_bytes(p[0], 2 ** p[1], use_huffman=use_huffman)
    )


def _code(t: Tensor, shared: bool, use_huffman: bool, index_bits: int | None):
    best = None
    for order in ("row", "col"):
        flat = _scan(t, order)
        runs, g = _index_plan(flat, index_bits, use_huffman)
        size = stream_bytes(runs, 2**g, use_huffman=use_huffman)
        if best is None or size < best[0]:
            best = (size, order, flat, runs, g)
    _, order, flat, runs, g = best
    entry = {"store": "coded", "order": order, "index_bits": g}
    parts = [write_stream(runs, 2**g, use_huffman=use_huffman)]
    values = flat[flat != 0]
    if shared:
        book, labels = np.unique(values, return_inverse=True)
        if book.size > 2**16:
            raise ValueError(
                f"{book.size} distinct values: share weights first (at most 2^16)"
            )
        dtype, raw = _raw(torch.from_numpy(book))
        entry.update(codebook=int(book.size), codebook_dtype=dtype)
        parts += [raw, write_stream(labels.astype(np.int64), max(book.size, 1),
                                    use_huffman=use_huffman)]  # fmt: skip
    else:
        parts.append(values.astype("<f4").tobytes())
    return entry, b"".join(parts), int(values.size)


def compress(
    model: nn.Module | dict[str, Tensor],
    *,
    shared: bool = True,
    use_huffman: bool = True,
    index_bits: int | None = None,
) -> bytes:
    """The ``.lwtc`` file of a model (see the module docstring).

    Args:
        model: the model (parametrizations and prune masks are folded in) or a state
            dict.
        shared: store weights as indices into a per-layer codebook (each weight tensor
            must hold at most 2^16 distinct nonzero values); False: raw float32.
        use_huffman: Huffman-code a stream where that is smaller than fixed width.
        index_bits: width of the relative indices (1–16); None picks the smallest
            file per tensor.
    """
    if index_bits is not None and not (
        isinstance(index_bits, int) and 1 <= index_bits <= 16
    ):
        raise ValueError(f"index_bits must be None or in 1..16, got {index_bits!r}")
    state = plain_state(model) if isinstance(model, nn.Module) else model
    header, body = [], []
    for name, t in state.items():
        entry = {"name": name, "shape": list(t.shape), "dtype": str(t.dtype)[6:]}
        if t.is_floating_point() and t.dim() >= 2 and t.numel():
            if t.dtype != torch.float32:
                raise TypeError(f"{name}: coded weights must be float32, got {t.dtype}")
            more, part, nnz = _code(t, shared, use_huffman, index_bits)
            entry.update(more, nonzeros=nnz)
        else:
            raw_dtype, part = _raw(t)
            entry.update(store="raw", raw_dtype=raw_dtype)
        header.append(entry)
        body.append(part)
    head = zlib.compress(json.dumps(header, separators=(",", ":")).encode(), 9)
    blob = MAGIC + struct.pack("<BI", VERSION, len(head)) + head + b"".join(body)
    return blob + struct.pack("<I", zlib.crc32(blob))


def _parse(blob: bytes) -> tuple[list[dict], Reader]:
    if len(blob) < 13 or blob[:4] != MAGIC:
        raise ValueError("not an .lwtc compressed model (bad magic or too short)")
    if zlib.crc32(blob[:-4]) != struct.unpack("<I", blob[-4:])[0]:
        raise ValueError("compressed file truncated or corrupted (CRC-32 mismatch)")
    version, n = struct.unpack("<BI", blob[4:9])
    if version != VERSION:
        raise ValueError(f"unsupported .lwtc version {version}")
    reader = Reader(blob[:-4], 9)
    try:
        header = json.loads(zlib.decompress(reader.take(n)))
    except (zlib.error, json.JSONDecodeError) as e:
        raise ValueError(f"compressed file corrupted: header ({e})") from None
    return _check_header(header, len(reader.blob) - reader.pos), reader


MAX_ELEMENTS = 2**28  # per tensor (1 GiB of float32): a larger shape is refused


def _check_header(header: object, body_bytes: int) -> list[dict]:
    """Every field of every entry checked before anything is allocated or converted:
    keys present, names unique, dtypes from :data:`_DTYPES`, shapes of non-negative
    ints within :data:`MAX_ELEMENTS`, widths and counts in range, raw sizes within
    the bytes that follow the header. Any malformed field is a ``ValueError``."""

    def bad(what: str) -> ValueError:
        return ValueError(f"compressed file corrupted: header {what}")

    if not isinstance(header, list):
        raise bad("is not a list of tensors")
    names: set[str] = set()
    raw_total = 0
    for e in header:
        if not isinstance(e, dict):
            raise bad("entry is not an object")
        need = {"name", "shape", "dtype", "store"}
        need |= {"raw_dtype"} if e.get("store") == "raw" else {
            "order", "index_bits", "nonzeros"}  # fmt: skip
        if missing := need - set(e):
            raise bad(f"entry misses {sorted(missing)}")
        name, shape = e["name"], e["shape"]
        if not isinstance(name, str) or name in names:
            raise bad(f"name {name!r} (not a string, or repeated)")
        names.add(name)
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise bad(f"shape of {name!r}: {shape!r}")
        size = int(np.prod(shape, dtype=np.float64)) if shape else 1
        if size > MAX_ELEMENTS:
            raise bad(f"shape of {name!r}: {size} elements (at most {MAX_ELEMENTS})")
        if e["dtype"] not in _DTYPES:
            raise bad(f"dtype of {name!r}: {e['dtype']!r}")
        if e["store"] == "raw":
            if e["raw_dtype"] not in _DTYPES:
                raise bad(f"raw_dtype of {name!r}: {e['raw_dtype']!r}")
            raw_total += size * np.dtype(_DTYPES[e["raw_dtype"]]).itemsize
        elif e["store"] == "coded":
            ints = {k: e[k] for k in ("index_bits", "nonzeros", "codebook") if k in e}
            if not all(type(v) is int for v in ints.values()):
                raise bad(f"fields of {name!r}: {ints}")
            if e["order"] not in ("row", "col") or not 1 <= e["index_bits"] <= 16:
                raise bad(f"order or index_bits of {name!r}")
            if not 0 <= e["nonzeros"] <= size or e["dtype"] != "float32":
                raise bad(f"nonzeros or dtype of {name!r}")
            if "codebook" in e and not (
                1 <= e["codebook"] <= 2**16 and e.get("codebook_dtype") in _DTYPES
            ):
                raise bad(f"codebook of {name!r}")
        else:
            raise bad(f"store of {name!r}: {e['store']!r}")
    if raw_total > body_bytes:
        raise bad(f"raw tensors need {raw_total} bytes, the file has {body_bytes}")
    return header


def _read_tensor(entry: dict, r: Reader) -> tuple[Tensor, dict]:
    shape = tuple(entry["shape"])
    if entry["store"] == "raw":
        dtype = np.dtype(_DTYPES[entry["raw_dtype"]]).newbyteorder("<")
        a = np.frombuffer(r.take(int(np.prod(shape)) * dtype.itemsize), dtype)
        t = torch.from_numpy(a.astype(dtype.newbyteorder("="))).reshape(shape)
        return t.to(getattr(torch, entry["dtype"])), {}
    size = int(np.prod(shape))
    runs, idx = r.stream(2 ** entry["index_bits"])
    pos = positions(runs, entry["index_bits"], size)
    if pos.size != entry["nonzeros"]:
        raise ValueError("compressed file corrupted: nonzero count")
    if "codebook" in entry:
        dt = np.dtype(_DTYPES[entry["codebook_dtype"]]).newbyteorder("<")
        raw = r.take(entry["codebook"] * dt.itemsize)
        book = np.frombuffer(raw, dt).astype(np.float32)
        labels, val = r.stream(max(entry["codebook"], 1))
        if labels.size != pos.size:
            raise ValueError("compressed file corrupted: value count")
        values, info = book[labels], {"index": idx, "values": val, "codebook": len(raw)}
    else:
        values = np.frombuffer(r.take(4 * pos.size), "<f4").astype(np.float32)
        info = {"index": idx, "values": {"mode": "float32", "bytes": 4 * pos.size}}
    flat = np.zeros(size, np.float32)
    flat[pos] = values
    rows = shape[0] if shape else 1
    m = flat.reshape(rows, -1) if entry["order"] == "row" else flat.reshape(-1, rows).T
    return torch.from_numpy(np.ascontiguousarray(m)).reshape(shape), info


def decompress(blob: bytes) -> dict[str, Tensor]:
    """The state dict stored by :func:`compress`, exact in value (zeros as +0.0).

    Raises:
        ValueError: not an ``.lwtc`` file, or truncated or corrupted.
    """
    header, reader = _parse(bytes(blob))
    state = {e["name"]: _read_tensor(e, reader)[0] for e in header}
    if reader.pos != len(reader.blob):
        raise ValueError("compressed file corrupted: trailing bytes")
    return state


def inspect(blob: bytes) -> list[dict]:
    """What each tensor costs in the file: store, nonzeros, index width, stream modes,
    and bytes (index stream, values and codebook, total)."""
    header, reader = _parse(bytes(blob))
    rows = []
    for e in header:
        start = reader.pos
        _, info = _read_tensor(e, reader)
        row = {k: e[k] for k in ("name", "shape", "store")}
        if e["store"] == "coded":
            row.update(nonzeros=e["nonzeros"], order=e["order"],
                       index_bits=e["index_bits"], index_mode=info["index"]["mode"],
                       entries=info["index"]["symbols"],
                       index_bytes=info["index"]["bytes"],
                       value_mode=info["values"]["mode"],
                       value_bytes=info["values"]["bytes"] + info.get("codebook", 0),
                       codebook=e.get("codebook", 0))  # fmt: skip
        row["bytes"] = reader.pos - start
        rows.append(row)
    return rows


__all__ = [
    "compress",
    "decompress",
    "inspect",
    "plain_state",
    "round_to_float16",
]
