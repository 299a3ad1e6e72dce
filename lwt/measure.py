"""The measurement ledger: one honest way to measure every model in the course.

Each quantity is measured, never derived from another:

- parameters and nonzero parameters, of the *effective* weights (a pruned layer's
  ``weight = weight_orig * weight_mask`` counts once, not twice);
- MACs of one image, from ``torch.utils.flop_counter`` (MACs = FLOPs / 2);
- bytes on disk: the exact size of ``torch.save(model.state_dict())`` (or of any
  other file format, passed in), and of that file gzip-compressed;
- CPU latency: median (and quartiles) over repeated runs after warm-up, with a fixed
  thread count, at batch 1 and batch 64;
- top-1 accuracy on a test loader (the full test set unless the caller subsets it).
"""

from __future__ import annotations

import copy
import gzip
import io
import itertools
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from . import stats
from .cpu import describe_cpu
from .train import evaluate


def effective_parameters(model: nn.Module) -> Iterator[tuple[str, Tensor]]:
    """``(name, tensor)`` of every parameter as the forward pass sees it.

    For a layer pruned with ``torch.nn.utils.prune`` this yields the masked
    ``weight`` (not ``weight_orig`` and the mask buffer); for a parametrized tensor
    (``torch.nn.utils.parametrize``, e.g. ``sharing.share_weights``) the tensor the
    parametrization computes (not its ``original``, e.g. a codebook).
    """
    for mod_name, module in model.named_modules():
        if isinstance(module, parametrize.ParametrizationList):
            continue  # its owner yields the computed tensor
        prefix = f"{mod_name}." if mod_name else ""
        if parametrize.is_parametrized(module):
            for name in module.parametrizations:
                yield prefix + name, getattr(module, name)
        for name, p in module._parameters.items():
            if p is None:
                continue
            if name.endswith("_orig") and isinstance(
                getattr(module, name[:-5], None), Tensor
            ):
                name, p = name[:-5], getattr(module, name[:-5])
            yield (f"{mod_name}.{name}" if mod_name else name), p


def count_params(model: nn.Module) -> int:
    """Number of (effective) parameters: sum of ``numel`` over them."""
    return sum(p.numel() for _, p in effective_parameters(model))


def count_nonzero(model: nn.Module) -> int:
    """Number of nonzero (effective) parameters."""
    return sum(int(torch.count_nonzero(p)) for _, p in effective_parameters(model))


def _check_shape(input_shape: tuple[int, ...]) -> None:
    if not input_shape or any(int(s) <= 0 for s in input_shape):
        raise ValueError(
            f"input_shape must be positive sizes (C, H, W), got {input_shape}"
        )


def _sdpa_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:  # noqa: ANN001, ANN002, ANN003
    """``QKᵀ`` and ``AV``: ``4·b·h·s_q·s_k·d`` FLOPs (torch's own SDPA formula)."""
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


# torch counts 0 FLOPs for scaled_dot_product_attention on the CPU: the CPU kernel it
# dispatches to has no formula (https://github.com/pytorch/pytorch/issues/195460).
_CPU_SDPA = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_EXTRA_FORMULAS = (
    {_CPU_SDPA: _sdpa_flops}
    if _CPU_SDPA is not None and _CPU_SDPA not in flop_counter.flop_registry
    else {}
)


@torch.no_grad()
def flop_counts(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """FLOPs of one image, per module path (``""`` is the whole model).

    FLOPs count a multiply-add as 2, as ``torch.utils.flop_counter`` does; attention
    (``F.scaled_dot_product_attention``) is counted on the CPU too.
    """
    _check_shape(input_shape)
    tensors = itertools.chain(model.parameters(), model.buffers())
    device = next((t.device for t in tensors), torch.device("cpu"))  # none: the CPU
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS) as counter:
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)  # the caller's mode, even when the forward fails
    out = {"": int(counter.get_total_flops())}
    for key, ops in counter.get_flop_counts().items():
        if key != "Global":
            path = key.split(".", 1)[1] if "." in key else ""
            out[path] = int(sum(ops.values()))
    return out


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass of one image: FLOPs / 2."""
    return flop_counts(model, input_shape)[""] // 2


def layer_table(model: nn.Module, input_shape: tuple[int, ...]) -> list[dict]:
    """Per-layer rows ``{layer, type, params, macs}`` for every conv/linear layer
    (``params``: its effective parameters, as :func:`effective_parameters`)."""
    flops = flop_counts(model, input_shape)
    rows = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            params = sum(p.numel() for _, p in effective_parameters(module))
            rows.append(
                {
                    "layer": name,
                    "type": type(module).__name__,
                    "params": params,
                    "macs": flops.get(name, 0) // 2,
                }
            )
    return rows


def serialized_bytes(model: nn.Module) -> int:
    """Exact size in bytes of the file ``torch.save(model.state_dict(), f)`` writes.

    ``f`` is an open file object. Given a *path* instead, torch names the zip archive
    inside after the file's stem, so the file grows or shrinks by a few bytes per
    stored tensor with the length of its name ("archive" is used here).
    """
    return len(state_dict_bytes(model))


def state_dict_bytes(model: nn.Module) -> bytes:
    """The bytes of ``torch.save(model.state_dict())``."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()


def gzip_bytes(payload: bytes) -> int:
    """Size of ``payload`` after ``gzip`` at level 9 (deterministic: mtime 0)."""
    return len(gzip.compress(payload, compresslevel=9, mtime=0))


@contextmanager
def num_threads(n: int):
    """Temporarily fix torch's intra-op thread count."""
    if n <= 0:
        raise ValueError(f"threads must be >= 1, got {n}")
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@dataclass
class Latency:
    """Wall-clock latency of one call, in milliseconds."""

    median_ms: float
    q1_ms: float
    q3_ms: float
    samples_ms: list[float] = field(repr=False)

    def __str__(self) -> str:
        return f"{self.median_ms:.2f} ms (IQR {self.q1_ms:.2f}-{self.q3_ms:.2f})"


@torch.no_grad()
def measure_latency(
    fn: Callable[[Tensor], object] | nn.Module,
    example: Tensor,
    warmup: int = 5,
    repeats: int = 30,
    threads: int = 1,
) -> Latency:
    """Median latency of ``fn(example)`` over ``repeats`` runs after ``warmup`` runs.

    Args:
        fn: a model (put in eval mode) or any callable taking the batch.
        example: the input batch, e.g. ``(64, 3, 32, 32)``.
        warmup: untimed runs first (allocators, kernel selection, caches).
        repeats: timed runs (>= 1); the median and quartiles are reported.
        threads: torch intra-op threads during the measurement.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    if isinstance(fn, nn.Module):
        fn.eval()
    samples = []
    with num_threads(threads):
        for i in range(warmup + repeats):
            start = time.perf_counter()
            fn(example)
            if i >= warmup:
                samples.append((time.perf_counter() - start) * 1e3)
    return _latency(samples)


def _latency(samples: list[float]) -> Latency:
    q1, med, q3 = (
        statistics.quantiles(samples, n=4) if len(samples) > 1 else samples * 3
    )
    return Latency(med, q1, q3, samples)


def compare_latency(
    fns: dict[str, Callable[[Tensor], object] | nn.Module],
    example: Tensor,
    rounds: int = 5,
    repeats: int = 10,
    threads: int = 1,
    warmup: int = 5,
) -> dict[str, Latency]:
    """Latency of several models on the same input, timed in alternating rounds.

    On a shared or throttling machine the speed drifts over seconds; timing model A
    and then model B would charge the drift to one of them. Here every round times
    each model ``repeats`` times, and each model's median is taken over all its
    rounds, so all models see the same mix of fast and slow periods. Each model is
    warmed up ``warmup`` times in the first round and once in the later ones (the
    other models ran in between). ``stats.speedup`` turns two models' samples into a
    speed-up with its interval.
    """
    if rounds < 1:
        raise ValueError(f"need rounds >= 1, got {rounds}")
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(rounds):
        for name, fn in fns.items():
            lat = measure_latency(fn, example, warmup=warmup if r == 0 else 1,
                                  repeats=repeats, threads=threads)  # fmt: skip
            samples[name] += lat.samples_ms
    return {name: _latency(s) for name, s in samples.items()}


@dataclass
class Row:
    """One ledger row. Accuracy is a fraction; sizes in bytes; latency in ms."""

    name: str
    accuracy: float | None
    eval_images: int | None
    params: int
    nonzeros: int
    macs: int
    file_bytes: int
    gzip_bytes: int
    latency_b1: Latency | None = None  # filled when the ledger times its rows
    latency_b64: Latency | None = None


class Ledger:
    """Collects measured rows and shows them as a table and as plots.

    Latency is timed for all rows together, in ``rounds`` alternating rounds of
    ``repeats // rounds`` runs each (:func:`compare_latency`; at most ``repeats``
    rounds), when the ledger is shown or its ``rows`` are read after a new row: one
    model measured twice cannot
    look faster only because the machine drifted between the two. The table shows
    each latency as its median ± half its interquartile range, each accuracy ± half
    its 95 % Wilson interval, and (with ``baseline``) the batch-64 speed-up with its
    95 % bootstrap interval over rounds (``stats.speedup``).

    Example:
        >>> ledger = Ledger(input_shape=(1, 28, 28))
        >>> ledger.measure("baseline", model, test_loader)
        >>> print(ledger)
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        threads: int = 1,
        repeats: int = 30,
        *,
        baseline: str | None = None,
        warmup: int = 5,
        rounds: int = 5,
    ) -> None:
        _check_shape(input_shape)
        if repeats < 1 or warmup < 0 or rounds < 1:
            raise ValueError(
                f"need repeats >= 1, warmup >= 0 and rounds >= 1, got {repeats}, "
                f"{warmup}, {rounds}"
            )
        self.input_shape, self.threads, self.repeats = (
            tuple(input_shape),
            threads,
            repeats,
        )
        self.warmup = warmup  # untimed runs before each model's first round
        self.rounds = min(rounds, repeats)  # at least one run per round
        self.baseline = baseline
        self._rows: list[Row] = []
        self._forwards: dict[int, Callable[[Tensor], object]] = {}  # id(row) -> fn
        self._timed = True

    @property
    def rows(self) -> list[Row]:
        """The rows, with every latency timed (in alternating rounds, if any row was
        added since the last timing). Rows appended from another ledger keep theirs."""
        self._time()
        return self._rows

    def _time(self) -> None:
        if self._timed:
            return
        todo = {i: r for i, r in enumerate(self._rows) if id(r) in self._forwards}
        for b, attr in ((1, "latency_b1"), (64, "latency_b64")):
            lat = compare_latency(
                {i: self._forwards[id(r)] for i, r in todo.items()},
                torch.randn(b, *self.input_shape),
                rounds=self.rounds,
                repeats=self.repeats // self.rounds,
                threads=self.threads,
                warmup=self.warmup,
            )
            for i, r in todo.items():
                setattr(r, attr, lat[i])
        self._timed = True

    def measure(
        self,
        name: str,
        model: nn.Module,
        loader: Iterable[tuple[Tensor, Tensor]] | None = None,
        payload: bytes | None = None,
        forward: Callable[[Tensor], object] | None = None,
        *,
        correct: Tensor | None = None,
    ) -> Row:
        """Measure ``model`` and append a row.

        Its latency is timed later, with every other row (class docstring).

        Args:
            name: row label.
            model: the model (its effective weights are counted).
            loader: test batches for accuracy (None: accuracy left blank).
            correct: instead of ``loader``, the per-image correctness the caller
                already measured (``stats.correct_mask``), so that a model is not
                evaluated twice.
            payload: the bytes of the model's deployable file, when it is not a plain
                ``torch.save`` state dict (a sparse or int8 format); default the
                state dict's bytes.
            forward: the callable to time (e.g. an ONNX Runtime session); default
                ``model``.
        """
        if loader is not None and correct is not None:
            raise ValueError("pass loader or correct, not both")
        if correct is not None and (correct.dim() != 1 or len(correct) == 0):
            raise ValueError(f"correct must be a non-empty 1-D mask, got shape "
                             f"{tuple(correct.shape)}")  # fmt: skip
        if any(t.device.type != "cpu" for t in (*model.parameters(), *model.buffers())):
            model = copy.deepcopy(model).cpu()  # measure a CPU copy; yours stays put
        was_training = model.training
        try:
            row = self._measure(name, model.eval(), loader, payload, forward)
        finally:
            model.train(was_training)
        if correct is not None:
            row.accuracy, row.eval_images = (
                int(correct.sum()) / len(correct),
                len(correct),
            )
        return row

    def _measure(self, name, model, loader, payload, forward) -> Row:  # noqa: ANN001
        payload = state_dict_bytes(model) if payload is None else payload
        forward = forward or model
        acc = n = None
        if loader is not None:
            seen: list[int] = []
            counted = ((x, y) for x, y in loader if not seen.append(len(y)))
            acc = evaluate(model if forward is model else _AsModule(forward), counted)
            n = sum(seen)
        row = Row(
            name,
            acc,
            n,
            count_params(model),
            count_nonzero(model),
            count_macs(model, self.input_shape),
            len(payload),
            gzip_bytes(payload),
        )
        self._rows.append(row)
        self._forwards[id(row)] = forward
        self._timed = False
        return row

    def records(self) -> list[dict[str, object]]:
        """Rows as plain dicts with display units (%, KB, ms).

        With ``baseline`` (a row's name), three more columns give each row's factor
        against it, ``baseline / row``: ``×size`` (file bytes), ``×MACs`` and ``×b64``
        (batch-64 latency); above 1 means smaller or faster.
        """
        base = self._baseline_row()
        return [
            {
                "model": r.name,
                "acc %": _accuracy(r),
                "params": f"{r.params:,}",
                "nonzero": f"{r.nonzeros:,}",
                "MMACs": f"{r.macs / 1e6:.2f}",
                "file KB": f"{r.file_bytes / 1e3:.1f}",
                "gzip KB": f"{r.gzip_bytes / 1e3:.1f}",
                "ms b1": _spread(r.latency_b1),
                "ms b64": _spread(r.latency_b64),
                **(self._factors(r, base) if base is not None else {}),
            }
            for r in self.rows
        ]

    def _baseline_row(self) -> Row | None:
        if self.baseline is None:
            return None
        for r in self.rows:
            if r.name == self.baseline:
                return r
        names = [r.name for r in self.rows]
        raise ValueError(f"baseline {self.baseline!r} is not a row; rows: {names}")

    def _factors(self, r: Row, base: Row) -> dict[str, str]:
        a, b = base.latency_b64, r.latency_b64
        try:
            s = stats.speedup(a.samples_ms, b.samples_ms, rounds=self.rounds)
            b64 = f"{s.ratio:.2f} [{s.low:.2f}, {s.high:.2f}]"
        except ValueError:  # a row timed elsewhere: no common rounds
            b64 = f"{a.median_ms / b.median_ms:.2f}"
        return {
            "×size": f"{base.file_bytes / r.file_bytes:.2f}",
            "×MACs": f"{base.macs / r.macs:.2f}" if r.macs else "-",
            "×b64": b64,
        }

    def to_markdown(self) -> str:
        """The ledger as a Markdown table (as pasted into the README)."""
        recs = self.records()
        if not recs:
            return "(empty ledger)"
        head = list(recs[0])
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in recs]
        return "\n".join(lines)

    def __str__(self) -> str:
        recs = self.records()
        if not recs:
            return "(empty ledger)"
        head = list(recs[0])
        width = {h: max(len(h), *(len(str(r[h])) for r in recs)) for h in head}
        lines = ["  ".join(h.rjust(width[h]) for h in head)]
        lines += ["  ".join(str(r[h]).rjust(width[h]) for h in head) for r in recs]
        note = (
            f"latency: median ± IQR/2 of {self.repeats // self.rounds * self.rounds} "
            f"runs in {self.rounds} "
            f"alternating rounds, {self.threads} thread(s); acc: ± half the 95 % "
            "interval" + ("; ×b64: 95 % interval" if self.baseline else "")
        )
        return "\n".join([describe_cpu(), *lines, note])

    def plot(self, title: str | None = None):  # noqa: ANN201 - a matplotlib Figure
        """Accuracy vs file size and vs batch-64 latency, one marker per row.

        Each row has its own colour and marker, named in one legend beside the plots
        (labels next to the points collide when rows nearly coincide, e.g. one model
        in two runtimes). Log x axes with plain-number ticks (1-2-5, or every integer
        step where fewer than three would show); ``title`` heads the figure.
        """
        import matplotlib.pyplot as plt
        from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

        rows = [r for r in self.rows if r.accuracy is not None]
        fig, axes = plt.subplots(1, 2, figsize=(13, 4))
        for ax, xs, label, what in (
            (axes[0], [r.file_bytes / 1e3 for r in rows], "file size (KB, log scale)",
             "accuracy vs file size"),
            (axes[1], [r.latency_b64.median_ms for r in rows],
             "latency at batch 64 (ms, log scale)", "accuracy vs latency"),
        ):  # fmt: skip
            for i, (x, r) in enumerate(zip(xs, rows, strict=True)):
                style = {"marker": "osD^vPX*<>"[i % 10], "color": f"C{i % 10}"}
                ax.scatter(x, 100 * r.accuracy, s=45, alpha=0.8, label=r.name, **style)
            ax.set_xscale("log")
            ax.set_xlim(min(xs) / 1.4, max(xs) * 1.4)
            ax.margins(y=0.1)  # markers at the extremes stay whole
            lo, hi = ax.get_xlim()
            locator = LogLocator(subs=(1.0, 2.0, 5.0))  # every integer step if < 3 fit
            if sum(lo <= t <= hi for t in locator.tick_values(lo, hi)) < 3:
                locator = LogLocator(subs=tuple(float(s) for s in range(1, 10)))
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(label)
            ax.set_ylabel("test accuracy (%)")
            ax.set_title(what, fontsize=10)
            ax.grid(alpha=0.3)
        axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
        fig.suptitle(title or "The ledger, measured in this run")
        fig.tight_layout()
        return fig


def _spread(lat: Latency | None) -> str:
    if lat is None:
        return "-"
    return f"{lat.median_ms:.2f} ±{(lat.q3_ms - lat.q1_ms) / 2:.2f}"


def _accuracy(r: Row) -> str:
    if r.accuracy is None:
        return "-"
    if not r.eval_images:
        return f"{100 * r.accuracy:.2f}"
    correct = round(r.accuracy * r.eval_images)
    lo, hi = stats.wilson_interval(correct, r.eval_images)
    return f"{100 * r.accuracy:.2f} ±{100 * (hi - lo) / 2:.2f}"


class _AsModule(nn.Module):
    """Wrap a callable so ``evaluate`` can run it like a model."""

    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return torch.as_tensor(self.fn(x))
