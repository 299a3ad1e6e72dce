"""lwt.sharing: k-means codebooks, Han eq. 3 gradients, Huffman, relative indices,
the .lwtc file (bit-exact, corruption detected), hashed and circulant layers."""

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from lwt import models, sharing
from lwt.sharing import (
    circulant,
    fileformat,
    hashing,
    huffman,
    kmeans,
    sparse_index,
    streams,
)

# Deep Compression, Fig. 3: a 4x4 weight matrix shared into 4 clusters
HAN_W = torch.tensor(
    [[2.09, -0.98, 1.48, 0.09], [0.05, -0.14, -1.08, 2.12],
     [-0.91, 1.92, 0.0, -1.03], [1.87, 0.0, 1.53, 1.49]]
)  # fmt: skip


@pytest.mark.parametrize("init", kmeans.INITS)
def test_kmeans_reproduces_han_figure_3(init):
    c, labels = kmeans.kmeans_1d(HAN_W, 4, init=init)
    assert torch.allclose(c, torch.tensor([-1.0, 0.0, 1.5, 2.0]), atol=1e-6)
    assert labels.shape == HAN_W.shape
    assert torch.equal(labels[0], torch.tensor([3, 0, 2, 1]))


def test_density_init_reads_the_cdf_at_evenly_spaced_levels():
    """Han §3.2: C_i = F^-1((i + 1/2) / k). On 0..99 with k = 4 the levels 1/8, 3/8,
    5/8, 7/8 read 12, 37, 62, 87 (not 0 and 99: linear's ends)."""
    v = torch.arange(100.0).flip(0)  # order does not matter
    dens = kmeans.init_centroids(v, 4, init="density")
    assert dens.tolist() == [12.0, 37.0, 62.0, 87.0]
    lin = kmeans.init_centroids(v, 4, init="linear")
    assert lin[0] == v.min() and lin[-1] == v.max() and not torch.equal(dens, lin)
    skew = torch.cat([torch.zeros(80), torch.linspace(1, 10, 20)])  # 80 % at 0
    assert kmeans.init_centroids(skew, 4, init="density").tolist()[:3] == [0, 0, 0]


def test_kmeans_two_clusters_and_bad_input():
    c, lab = kmeans.kmeans_1d(torch.tensor([1.0, 1.1, 5.0, 5.2]), 2)
    assert torch.allclose(c, torch.tensor([1.05, 5.1])) and lab.tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="cannot fill"):
        kmeans.kmeans_1d(torch.ones(3), 4)
    with pytest.raises(ValueError, match="init"):
        kmeans.kmeans_1d(torch.ones(8), 2, init="kmeans++")


def test_codebook_gradient_is_the_per_cluster_sum():
    layer = nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        layer.weight.copy_(HAN_W)
    sharing.share_weights(layer_model := nn.Sequential(layer), 2)
    x = torch.randn(5, 4)
    layer_model(x).pow(2).sum().backward()
    book = layer.parametrizations.weight.original
    p = layer.parametrizations.weight[0]
    w = layer.weight.detach().requires_grad_()
    nn.functional.linear(x, w).pow(2).sum().backward()  # dL/dW at the shared W
    g = w.grad * p.mask
    expected = torch.stack([g[p.labels == k].sum() for k in range(4)])
    assert torch.allclose(book.grad, expected, atol=1e-5)
    assert layer.weight[HAN_W == 0].eq(0).all()  # pruned stays zero


def test_share_weights_validates_before_touching():
    model = models.create_model("lenet300")
    with torch.no_grad():
        model.fc3.weight[:, 1:] = 0  # 10 nonzeros left
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="fc3"):
        sharing.share_weights(model, 4)
    with pytest.raises(ValueError, match="1..16"):
        sharing.share_weights(model, 17)
    with pytest.raises(ValueError, match="bits names"):
        sharing.share_weights(model, {"fc9": 3})
    with pytest.raises(TypeError):
        sharing.share_weights(model, 2.5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_shared_copy_has_at_most_2_to_the_bits_values_and_trains():
    model = models.create_model("lenet300")
    shared = sharing.share_weights(copy.deepcopy(model), {"fc1": 3, "fc2": 2})
    opt = torch.optim.SGD(shared.parameters(), lr=1e-3)
    nn.functional.cross_entropy(
        shared(torch.randn(4, 1, 28, 28)), torch.arange(4)
    ).backward()
    opt.step()
    books = sharing.codebooks(shared)
    assert books["fc1"].shape == (8,) and set(books) == {"fc1", "fc2"}
    assert not torch.equal(books["fc1"], kmeans.kmeans_1d(model.fc1.weight, 8)[0])
    plain = sharing.unshare(shared)
    assert plain.fc1.weight.unique().numel() <= 8
    assert plain.fc2.weight.unique().numel() <= 4
    assert plain.fc3.weight.unique().numel() > 16


@pytest.mark.parametrize(
    "counts, lengths",
    [([45, 13, 12, 16, 9, 5], [1, 3, 3, 3, 4, 4]),  # CLRS 16.3
     ([1, 1, 2, 4, 8], [4, 4, 3, 2, 1]),
     ([0, 7, 0], [0, 1, 0])],
)  # fmt: skip
def test_huffman_known_answers(counts, lengths):
    assert huffman.code_lengths(counts) == lengths
    assert huffman.is_prefix_free(lengths)


def test_huffman_is_optimal_and_within_a_bit_of_entropy():
    rng = np.random.default_rng(0)
    for _ in range(20):
        counts = rng.integers(1, 100, size=rng.integers(2, 12)).tolist()
        lengths = huffman.code_lengths(counts)
        assert sum(2.0**-ln for ln in lengths) == pytest.approx(1.0)  # Kraft: full tree
        n = sum(counts)
        mean = sum(c * ln for c, ln in zip(counts, lengths, strict=True)) / n
        h = -sum(c / n * math.log2(c / n) for c in counts)
        assert h <= mean < h + 1
    # optimal: no other length assignment of a small source does better (brute force)
    counts = [5, 9, 12, 13, 16, 45]
    best = min(
        sum(c * ln for c, ln in zip(counts, ls, strict=True))
        for ls in __import__("itertools").product(range(1, 6), repeat=6)
        if sum(2.0**-ln for ln in ls) <= 1
    )
    assert huffman.huffman_bits(counts) == best


def test_huffman_and_fixed_round_trip():
    rng = np.random.default_rng(1)
    s = rng.choice(7, 999, p=[0.4, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05])
    lengths = huffman.code_lengths(np.bincount(s, minlength=7).tolist())
    blob = huffman.encode(s, lengths)
    assert len(blob) == math.ceil(huffman.huffman_bits(np.bincount(s)) / 8)
    assert np.array_equal(huffman.decode(blob, lengths, s.size), s)
    assert np.array_equal(huffman.unpack_fixed(huffman.pack_fixed(s, 3), 3, s.size), s)
    with pytest.raises(ValueError):
        huffman.decode(blob[: len(blob) // 2], lengths, s.size)


@pytest.mark.parametrize("bits", [1, 2, 3, 8])
def test_relative_indices_with_fillers_round_trip(bits):
    mask = np.zeros(40, bool)
    mask[[0, 1, 5, 21, 22, 39]] = True
    s = sparse_index.relative_indices(mask, bits)
    big = 2**bits - 1
    assert s.max() <= big and (s != big).sum() == mask.sum()
    assert (s == big).sum() == sparse_index.count_fillers(mask, bits)
    assert np.array_equal(sparse_index.positions(s, bits, 40), np.flatnonzero(mask))


def test_relative_indices_han_figure_2():
    # Han Fig. 2 (3-bit differences): a gap of 8+ zeros needs one filler
    mask = np.zeros(16, bool)
    mask[[1, 4, 15]] = True
    assert sparse_index.relative_indices(mask, 3).tolist() == [1, 2, 7, 3]


def _sparse_shared_model():
    torch.manual_seed(0)
    model = models.create_model("lenet300")
    with torch.no_grad():
        for m in (model.fc1, model.fc2, model.fc3):
            m.weight[m.weight.abs() < m.weight.abs().quantile(0.9)] = 0
    model = sharing.shared_copy(model, 4)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    return model


def test_lwtc_round_trip_is_exact_in_value_and_small():
    model = _sparse_shared_model()
    state = model.state_dict()
    for kw in ({}, {"use_huffman": False}, {"index_bits": 5}):
        out = sharing.decompress(sharing.compress(model, **kw))
        assert list(out) == list(state)
        assert all(torch.equal(out[k], v) for k, v in state.items())
    raw = sharing.compress(model, shared=False, use_huffman=False)
    assert all(torch.equal(sharing.decompress(raw)[k], v) for k, v in state.items())
    blob = sharing.compress(model)
    assert len(blob) < len(sharing.compress(model, use_huffman=False)) < len(raw)
    rows = sharing.inspect(blob)
    assert sum(r["bytes"] for r in rows) < len(blob)
    assert {r["name"] for r in rows if r["store"] == "coded"} == {
        "fc1.weight", "fc2.weight", "fc3.weight"
    }  # fmt: skip


def test_lwtc_detects_truncation_and_corruption():
    blob = sharing.compress(_sparse_shared_model())
    with pytest.raises(ValueError, match="magic"):
        sharing.decompress(b"PK" + blob[2:])
    with pytest.raises(ValueError, match="truncated|corrupted"):
        sharing.decompress(blob[:-10])
    for pos in (20, len(blob) // 2, len(blob) - 6):
        bad = bytearray(blob)
        bad[pos] ^= 0x10
        with pytest.raises(ValueError, match="corrupted"):
            sharing.decompress(bytes(bad))


def test_lwtc_refuses_unshared_weights():
    with pytest.raises(ValueError, match="share weights first"):
        sharing.compress(models.create_model("lenet5"))
    with pytest.raises(ValueError, match="index_bits"):
        sharing.compress(models.create_model("lenet5"), index_bits=0)


def test_hashed_linear_matches_its_dense_virtual_matrix():
    layer = hashing.HashedLinear(30, 20, 50, seed=3)
    x = torch.randn(4, 30)
    v = layer.virtual_weight()
    assert v.shape == (20, 30)
    assert torch.allclose(layer(x), x @ v.T + layer.bias, atol=1e-6)
    assert set(v.abs().unique().tolist()) <= set(layer.weight.abs().tolist())
    again = hashing.HashedLinear(30, 20, 50, seed=3)
    assert torch.equal(again.index, layer.index) and torch.equal(again.sign, layer.sign)
    assert (layer.sign == 1).float().mean().item() == pytest.approx(0.5, abs=0.1)
    # the gradient of a real weight is the signed sum over its virtual entries
    layer(x).sum().backward()
    gv = (torch.ones(4, 20).T @ x) * layer.sign
    expected = torch.zeros(50).index_add_(0, layer.index.flatten(), gv.flatten())
    assert torch.allclose(layer.weight.grad, expected, atol=1e-4)
    with pytest.raises(ValueError, match="n_weights"):
        hashing.HashedLinear(3, 2, 7)


@pytest.mark.parametrize(
    "shape, block", [((16, 16), None), ((30, 12), 4), ((7, 10), 3)]
)
def test_circulant_matches_dense_reference(shape, block):
    i, o = shape
    layer = circulant.CirculantLinear(i, o, block_size=block)
    w = layer.dense_weight()
    b = layer.block_size
    assert w.shape == (o, i)
    assert layer.weight.numel() == math.ceil(i / b) * math.ceil(o / b) * b
    # each block is circulant: every entry repeats along its diagonal
    blk = w[:b, :b] if o >= b and i >= b else None
    if blk is not None:
        assert torch.equal(blk[1:, 1:], blk[:-1, :-1])
    x = torch.randn(2, 3, i)
    assert torch.allclose(layer(x), x @ w.T + layer.bias, atol=1e-5)
    with pytest.raises(ValueError, match="block_size"):
        circulant.CirculantLinear(4, 4, block_size=0)


def test_plain_state_folds_prune_masks():
    model = models.create_model("lenet300")
    prune.l1_unstructured(model.fc1, "weight", 0.5)
    state = fileformat.plain_state(model)
    assert "fc1.weight" in state and "fc1.weight_orig" not in state
    assert (state["fc1.weight"] == 0).float().mean() == pytest.approx(0.5, abs=1e-3)


def test_circulant_from_dense_is_the_least_squares_projection():
    dense = nn.Linear(10, 7)
    layer = circulant.CirculantLinear.from_dense(dense, 4)
    w = layer.dense_weight().detach()
    # projecting again changes nothing, and the residual is orthogonal to the subspace
    with torch.no_grad():
        again_src = nn.Linear(10, 7)
        again_src.weight.copy_(w)
        again = circulant.CirculantLinear.from_dense(again_src, 4)
    assert torch.allclose(again.dense_weight(), w, atol=1e-6)
    probe = circulant.CirculantLinear(10, 7, block_size=4).dense_weight().detach()
    resid = dense.weight.detach() - w
    assert (resid * probe).sum().abs() < 1e-5
    assert torch.equal(layer.bias, dense.bias)


def test_stream_costs_tiny_streams_keep_fixed_width():
    s = np.array([0, 1, 2, 3, 0, 1])
    costs = streams.stream_costs(s, 4)
    assert costs["huffman"] > costs["fixed"]  # the table costs more than it saves
    assert streams.stream_bytes(s, 4, use_huffman=True) == costs["fixed"]
    assert len(streams.write_stream(s, 4, use_huffman=True)) == costs["fixed"]
    skewed = np.zeros(5000, dtype=np.int64)
    skewed[::50] = 3
    costs = streams.stream_costs(skewed, 4)
    assert costs["huffman"] < costs["fixed"]
    assert len(streams.write_stream(skewed, 4, use_huffman=True)) == costs["huffman"]


def test_round_to_float16_makes_compress_store_two_bytes():
    model = _sparse_shared_model()  # already rounded
    raw = models.create_model("lenet300")
    sharing.round_to_float16(raw)
    assert all(torch.equal(p, p.half().float()) for p in raw.parameters())
    rows = {r["name"]: r for r in sharing.inspect(sharing.compress(model))}
    assert rows["fc1.bias"]["bytes"] == 2 * 300


def test_hashed_linear_loads_its_seed_with_the_state_dict():
    trained = hashing.HashedLinear(12, 5, 20, seed=3)
    fresh = hashing.HashedLinear(12, 5, 20, seed=0)
    x = torch.randn(2, 12)
    assert not torch.allclose(fresh(x), trained(x))
    fresh.load_state_dict(trained.state_dict())
    assert torch.equal(fresh.index, trained.index) and torch.equal(fresh(x), trained(x))


def _lwtc_with_header(header, body=b""):
    """A file with a valid magic, version and CRC around any header (crafted files)."""
    import json
    import struct
    import zlib

    from lwt.sharing import fileformat as ff

    head = zlib.compress(json.dumps(header).encode())
    blob = ff.MAGIC + struct.pack("<BI", ff.VERSION, len(head)) + head + body
    return blob + struct.pack("<I", zlib.crc32(blob))


def _good_entry():
    return {"name": "w", "shape": [4, 4], "dtype": "float32", "store": "coded",
            "order": "row", "index_bits": 4, "nonzeros": 3}  # fmt: skip


@pytest.mark.parametrize(
    "change",
    [
        {"dtype": "load"},  # a torch attribute, not a dtype
        {"shape": [-1, 4]},
        {"shape": [2**20, 2**20]},  # would allocate 4 TiB
        {"shape": "4x4"},
        {"index_bits": 0},
        {"index_bits": 17},
        {"nonzeros": 17},
        {"order": "diag"},
        {"store": "pickle"},
        {"codebook": 0, "codebook_dtype": "float32"},
        {"codebook": 70_000, "codebook_dtype": "float32"},
        {"codebook": 4, "codebook_dtype": "object"},
        {"index_bits": True},
    ],
)
def test_malformed_lwtc_headers_are_refused_before_decoding(change):
    """Issue 29: every header field is validated before anything is allocated."""
    with pytest.raises(ValueError, match="header"):
        sharing.decompress(_lwtc_with_header([{**_good_entry(), **change}]))


def test_malformed_lwtc_header_structure_is_refused():
    entry = _good_entry()
    for header in ({"w": entry}, [entry, entry], [{k: v for k, v in entry.items()
                                                   if k != "nonzeros"}],
                   [{"name": "b", "shape": [1000], "dtype": "float32", "store": "raw",
                     "raw_dtype": "float32"}]):  # fmt: skip
        with pytest.raises(ValueError, match="header"):
            sharing.decompress(_lwtc_with_header(header, body=b"\0" * 16))


# ---- widths: a sweep per layer and the narrowest width within a slack -------------


def _two_layers() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))


def test_bit_sweep_scores_each_layer_alone_and_leaves_the_model_untouched():
    model = _two_layers()
    before = copy.deepcopy(model.state_dict())
    original = {n: m.weight.detach().clone() for n, m in model.named_modules()
                if isinstance(m, nn.Linear)}  # fmt: skip
    seen = []

    def score(m):  # the squared error of every layer's weights: only one may move
        seen.append({n: float((x.weight.detach() - original[n]).pow(2).sum())
                     for n, x in m.named_modules() if isinstance(x, nn.Linear)})
        return sum(seen[-1].values())

    sweep = sharing.bit_sweep(model, score, candidates=(3, 1, 2))
    assert list(sweep) == ["0", "2"]
    assert all(list(r) == [1, 2, 3] for r in sweep.values())
    assert all(sorted(v == 0.0 for v in s.values()) == [False, True] for s in seen)
    for row in sweep.values():  # more levels, smaller error (k-means, linear init)
        assert row[1] > row[2] > row[3] > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_choose_bits_takes_the_narrowest_width_within_the_slack():
    sweep = {"a": {1: 120.0, 2: 83.0, 3: 79.0, 4: 76.0, 5: 80.0},
             "b": {1: 90.0, 2: 90.0, 3: 90.0}}  # fmt: skip
    assert sharing.choose_bits(sweep, 77) == {"a": 4, "b": 3}  # b: none fits, widest
    assert sharing.choose_bits(sweep, 77, slack=2) == {"a": 3, "b": 3}
    assert sharing.choose_bits(sweep, 77, slack=13) == {"a": 2, "b": 1}
    with pytest.raises(ValueError, match="slack"):
        sharing.choose_bits(sweep, 77, slack=-1)
    with pytest.raises(ValueError, match="slack"):
        sharing.choose_bits(sweep, 77, slack=float("nan"))
    with pytest.raises(ValueError, match="reference must be a finite"):
        sharing.choose_bits(sweep, float("nan"))
    with pytest.raises(ValueError, match=r"rows \['c'\] are empty"):
        sharing.choose_bits({**sweep, "c": {}}, 77)


def test_bit_sweep_refuses_bad_input_before_scoring():
    model = _two_layers()
    calls = []

    def score(m):
        calls.append(1)
        return 0.0

    with pytest.raises(ValueError, match=r"layers names \['fc9'\]"):
        sharing.bit_sweep(model, score, layers=["fc9"])
    with pytest.raises(TypeError, match="layers"):
        sharing.bit_sweep(model, score, layers="0")
    with pytest.raises(ValueError, match="candidates must be in 1..16"):
        sharing.bit_sweep(model, score, candidates=(2, 17))
    with pytest.raises(TypeError, match="candidates must be an int"):
        sharing.bit_sweep(model, score, candidates=(2.0,))
    with pytest.raises(ValueError, match="at least one"):
        sharing.bit_sweep(model, score, candidates=())
    with torch.no_grad():
        model[2].weight[:, 1:] = 0  # 4 nonzero weights left: not enough for 3 bits
    with pytest.raises(ValueError, match="'2' has 4 nonzero weights, fewer than 2\\^3"):
        sharing.bit_sweep(model, score, candidates=(1, 2, 3))
    prune.l1_unstructured(model[0], "weight", amount=0.5)  # a mask not folded yet
    with pytest.raises(ValueError, match="masked or parametrized"):
        sharing.bit_sweep(model, score, layers=["0"])
    assert calls == []
