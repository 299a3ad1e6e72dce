import dataclasses
import gzip
import io
import re

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from lwt import measure, stats


def test_macs_of_single_layers():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert measure.count_macs(conv, (3, 10, 10)) == 8 * 10 * 10 * 3 * 3 * 3
    assert measure.count_macs(nn.Conv2d(3, 8, 3, stride=2), (3, 9, 9)) == 8 * 4 * 4 * 27
    assert measure.count_macs(nn.Linear(10, 5), (10,)) == 50
    grouped = nn.Conv2d(8, 8, 3, padding=1, groups=8)  # depthwise: 1/8 of dense
    assert measure.count_macs(grouped, (8, 6, 6)) == 8 * 6 * 6 * 9


def test_layer_table():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2))
    rows = measure.layer_table(model, (1, 6, 6))  # conv out: (4, 4, 4) = 64 features
    assert [(r["layer"], r["params"], r["macs"]) for r in rows] == [
        ("0", 40, 4 * 16 * 9),
        ("3", 130, 128),
    ]


def test_params_and_nonzeros_with_prune_hooks():
    model = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 2))
    assert measure.count_params(model) == 132
    prune.l1_unstructured(model[0], "weight", amount=0.3)
    assert measure.count_params(model) == 132  # weight_orig + mask count once
    assert measure.count_nonzero(model) == 132 - 30
    names = [n for n, _ in measure.effective_parameters(model)]
    assert names == ["0.bias", "0.weight", "1.weight", "1.bias"]


def test_bytes_of_known_state_dict(tmp_path):
    model = nn.Linear(1000, 100)  # 100,100 float32 = 400,400 bytes of tensor data
    n = measure.serialized_bytes(model)
    assert 400_400 < n < 400_400 + 4096  # plus zip headers and the pickled structure
    with open(tmp_path / "any_name.pt", "wb") as f:
        torch.save(model.state_dict(), f)
    assert (tmp_path / "any_name.pt").stat().st_size == n
    payload = measure.state_dict_bytes(model)
    assert measure.gzip_bytes(payload) == len(gzip.compress(payload, 9, mtime=0))
    assert torch.equal(
        torch.load(io.BytesIO(payload), weights_only=True)["weight"], model.weight
    )


def test_zeros_compress():
    model = nn.Linear(1000, 100)
    dense = measure.gzip_bytes(measure.state_dict_bytes(model))
    with torch.no_grad():
        model.weight.zero_()
    assert measure.gzip_bytes(measure.state_dict_bytes(model)) < dense / 10


def test_latency_and_threads():
    before = torch.get_num_threads()
    lat = measure.measure_latency(
        nn.Linear(10, 10), torch.randn(4, 10), warmup=1, repeats=5, threads=1
    )
    assert len(lat.samples_ms) == 5 and lat.q1_ms <= lat.median_ms <= lat.q3_ms
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="repeats"):
        measure.measure_latency(nn.Linear(1, 1), torch.randn(1, 1), repeats=0)
    with pytest.raises(ValueError, match="threads"):
        with measure.num_threads(0):
            pass


def test_ledger_rows_and_table():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    batches = [(torch.randn(5, 1, 2, 2), torch.randint(0, 3, (5,))) for _ in range(2)]
    ledger = measure.Ledger((1, 2, 2), repeats=4, rounds=2)
    row = ledger.measure("tiny", model, batches)
    assert row.eval_images == 10 and 0 <= row.accuracy <= 1
    assert row.params == 15 and row.macs == 12
    assert row.file_bytes == measure.serialized_bytes(model)
    custom = ledger.measure("custom file", model, payload=b"x" * 100)
    assert custom.file_bytes == 100 and custom.accuracy is None
    mask = stats.correct_mask(model, batches)  # measured once, shown in the ledger
    again = ledger.measure("from a mask", model, correct=mask)
    assert (again.accuracy, again.eval_images) == (row.accuracy, 10)
    with pytest.raises(ValueError, match="not both"):
        ledger.measure("both", model, batches, correct=mask)
    md = ledger.to_markdown()
    assert md.count("\n") == 4 and "| tiny |" in md
    assert "tiny" in str(ledger) and "4 runs in 2 alternating rounds" in str(ledger)
    assert ledger.plot() is not None


def test_ledger_plot_names_every_row_in_one_legend():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    batches = [(torch.randn(5, 1, 2, 2), torch.randint(0, 3, (5,)))]
    ledger = measure.Ledger((1, 2, 2), repeats=4, rounds=2)
    for name in ("torch", "onnx", "other"):  # same file, accuracy: one spot
        ledger.measure(name, model, batches)
    fig = ledger.plot()
    names = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert names == ["torch", "onnx", "other"]
    for ax in fig.axes:  # no labels in the plot area; one distinct marker per row
        assert not ax.texts and len(ax.collections) == 3
        colors = {tuple(c.get_facecolor()[0]) for c in ax.collections}
        assert len(colors) == 3


def test_ledger_plot_labels_at_least_three_ticks_on_a_narrow_log_axis():
    ledger = measure.Ledger((1, 2, 2), repeats=4, rounds=2)
    batches = [(torch.randn(5, 1, 2, 2), torch.randint(0, 3, (5,)))]
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    for name, size in (("a", 874_000), ("b", 1_106_000), ("c", 1_121_000)):
        ledger.measure(name, model, batches, payload=b"x" * size)  # 874-1121 KB
    fig = ledger.plot()
    fig.canvas.draw()
    lo, hi = fig.axes[0].get_xlim()
    shown = [t for t in fig.axes[0].xaxis.get_major_ticks() if lo <= t.get_loc() <= hi]
    assert len(shown) >= 3 and all(t.label1.get_text() for t in shown)


def test_ledger_factors_against_a_baseline_row():
    big = nn.Sequential(nn.Flatten(), nn.Linear(4, 30), nn.Linear(30, 3))
    small = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    ledger = measure.Ledger((1, 2, 2), repeats=4, rounds=2, baseline="big")
    ledger.measure("big", big)
    ledger.measure("small", small, payload=b"x" * 50)
    big_rec, small_rec = ledger.records()
    assert big_rec["×size"] == "1.00" and big_rec["×MACs"] == "1.00"
    size = ledger.rows[0].file_bytes / 50
    assert small_rec["×size"] == f"{size:.2f}"
    assert small_rec["×MACs"] == f"{(4 * 30 + 30 * 3) / 12:.2f}"
    assert "×b64" in ledger.to_markdown()
    assert re.fullmatch(r"1\.00 \[1\.00, 1\.00\]", big_rec["×b64"])
    assert re.fullmatch(r"\d+\.\d\d \[\d+\.\d\d, \d+\.\d\d\]", small_rec["×b64"])
    with pytest.raises(ValueError, match="baseline 'nope'"):
        measure.Ledger((1, 2, 2), baseline="nope").records()


def test_bad_shapes():
    with pytest.raises(ValueError, match="input_shape"):
        measure.count_macs(nn.Linear(1, 1), (0,))
    with pytest.raises(ValueError, match="input_shape"):
        measure.Ledger((-1, 28, 28))


def test_ledger_times_and_scores_a_custom_forward():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    calls = []

    def deployed(x):  # e.g. an exported runtime: returns logits as numpy or tensor
        calls.append(len(x))
        return model(x).detach().numpy()

    batches = [(torch.randn(5, 1, 2, 2), torch.randint(0, 3, (5,)))]
    ledger = measure.Ledger((1, 2, 2), repeats=2, rounds=2)
    row = ledger.measure("deployed", model, batches, forward=deployed)
    assert row.accuracy == measure.evaluate(model, batches)
    assert calls == [5] and row.latency_b64 is None  # timed when shown, with the rest
    assert ledger.rows[0].latency_b64 is not None
    assert 64 in calls and 1 in calls  # timed at b1, b64


def test_ledger_times_its_rows_in_alternating_rounds():
    calls = []

    def fwd(name):
        return lambda x: calls.append((name, len(x)))

    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    ledger = measure.Ledger((1, 2, 2), repeats=4, rounds=2, warmup=1)
    for name in "ab":
        ledger.measure(name, model, forward=fwd(name))
    assert calls == []
    str(ledger)
    b64 = [n for n, b in calls if b == 64]
    # round 1: a (1 warm-up + 2), b (the same); round 2: a (1 + 2), b (1 + 2)
    assert b64 == ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3
    n = len(calls)
    str(ledger)
    assert len(calls) == n  # nothing new: not timed again
    ledger.measure("c", model, forward=fwd("c"))
    assert ledger.rows
    assert {name for name, _ in calls[n:]} == {"a", "b", "c"}  # all timed together
    elsewhere = dataclasses.replace(ledger.rows[0], name="from another ledger")
    ledger.rows.append(elsewhere)
    assert "from another ledger" in str(ledger) and ledger.rows[-1] is elsewhere


def test_ledger_shows_spreads_and_intervals():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.randn(400, 1, 2, 2), torch.randint(0, 3, (400,))
    ledger = measure.Ledger((1, 2, 2), repeats=4, rounds=2)
    row = ledger.measure("m", model, [(x, y)])
    rec = ledger.records()[0]
    lo, hi = stats.wilson_interval(round(row.accuracy * 400), 400)
    assert rec["acc %"] == f"{100 * row.accuracy:.2f} ±{100 * (hi - lo) / 2:.2f}"
    lat = row.latency_b64
    assert rec["ms b64"] == f"{lat.median_ms:.2f} ±{(lat.q3_ms - lat.q1_ms) / 2:.2f}"
    with pytest.raises(ValueError, match="rounds"):
        measure.Ledger((1, 2, 2), rounds=0)
    assert measure.Ledger((1, 2, 2), repeats=3, rounds=5).rounds == 3


def test_compare_latency_alternates_and_pools_rounds():
    calls = []
    fns = {"a": lambda x: calls.append("a"), "b": lambda x: calls.append("b")}
    lat = measure.compare_latency(fns, torch.zeros(1), rounds=3, repeats=2)
    assert set(lat) == {"a", "b"} and all(len(v.samples_ms) == 6 for v in lat.values())
    assert calls[:7] == ["a"] * 7 and calls[7] == "b"  # warm-up 5 + 2 timed, then b
    assert calls.count("a") == calls.count("b") == 7 + 2 * 3  # later rounds: 1 + 2
    with pytest.raises(ValueError, match="rounds"):
        measure.compare_latency(fns, torch.zeros(1), rounds=0)


def test_flop_counts_of_a_model_without_parameters_and_mode_restored_on_error():
    """Issue 29: a parameter-free model raised StopIteration; a failing forward left
    the model in eval mode."""
    assert measure.flop_counts(nn.Sequential(nn.Flatten(), nn.ReLU()), (1, 4, 4)) == {
        "": 0
    }

    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            raise RuntimeError("boom")

    m = Boom().train()
    with pytest.raises(RuntimeError, match="boom"):
        measure.flop_counts(m, (4,))
    assert m.training


def test_counts_see_the_weights_a_shared_layer_computes_not_its_codebook():
    """A ``sharing.share_weights`` layer stores a codebook (``2^bits`` values) as its
    parameter; the counts are of the weights it computes (16-8-4 MLP: 172)."""
    from lwt import sharing

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    sharing.share_weights(model, 2)
    assert measure.count_params(model) == 16 * 8 + 8 + 8 * 4 + 4 == 172
    assert measure.count_nonzero(model) == 172
    rows = measure.layer_table(model, (16,))
    assert [r["params"] for r in rows] == [136, 36]


def test_attention_is_counted_on_the_cpu():
    """torch's FlopCounterMode counts 0 for CPU SDPA (pytorch/pytorch#195460)."""
    from lwt import models

    class Attend(torch.nn.Module):
        def forward(self, x):  # x (1, 3, 32, 32) -> q = k = v (1, 4, 64, 24)
            q = x.reshape(1, 4, 64, 12).repeat(1, 1, 1, 2)
            return torch.nn.functional.scaled_dot_product_attention(q, q, q)

    assert measure.count_macs(Attend(), (3, 32, 32)) == 2 * 4 * 64 * 64 * 24
    model = models.create_model("cct4")
    linear_and_conv = sum(r["macs"] for r in measure.layer_table(model, (3, 32, 32)))
    attention = 4 * 2 * 4 * 64**2 * 32  # 4 blocks, QKᵀ and AV of 4 heads
    pooling = 64 * 128  # sequence pooling's weighted mean of 64 tokens of width 128
    total = linear_and_conv + attention + pooling
    assert measure.count_macs(model, (3, 32, 32)) == total

    seen = []  # the count runs without building a graph
    hook = model.blocks[0].register_forward_hook(
        lambda m, i, o: seen.append(o.requires_grad)
    )
    measure.count_macs(model, (3, 32, 32))
    hook.remove()
    assert seen == [False]
