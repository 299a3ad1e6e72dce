"""Checks of notebook 00 (baselines and measurement): the cost of a convolution and a
latency median.

Rules the checks enforce (and the notebook states):
``H_out = ⌊(H + 2p − d(k − 1) − 1)/s⌋ + 1`` per axis (kernels, strides, paddings and
dilations may differ between the axes); a grouped conv connects each output to
``C_in/g`` inputs; the bias adds parameters, not MACs. The latency is the median in
**milliseconds** of ``repeats`` timed calls made after ``warmup`` untimed ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn
from torch.utils import flop_counter

from .. import measure
from ._check import Guard, attempt, fail, verdict


def _conv_cases() -> list[tuple[str, nn.Conv2d, tuple[int, int, int], str]]:
    gen = torch.Generator().manual_seed(0)

    def pick(*options):  # noqa: ANN002, ANN202
        return options[int(torch.randint(len(options), (1,), generator=gen))]

    cases = [
        (
            "worked by hand: 3→16, 3×3, padding 1 on 3×32×32 "
            "(448 parameters, 442,368 MACs)",
            nn.Conv2d(3, 16, 3, padding=1),
            (3, 32, 32),
            "(C_in·k·k + 1)·C_out parameters",
        ),
        (
            "stride 2 on an odd size: 8→8, 3×3, padding 1 on 8×17×17",
            nn.Conv2d(8, 8, 3, stride=2, padding=1),
            (8, 17, 17),
            "H_out = ⌊(H + 2p − d(k − 1) − 1)/s⌋ + 1: floor division",
        ),
        (
            "dilation 2: 4→4, 3×3 on 4×16×16",
            nn.Conv2d(4, 4, 3, dilation=2),
            (4, 16, 16),
            "a dilated kernel spans d(k − 1) + 1 pixels",
        ),
        (
            "depthwise: 16→16, groups 16, 3×3, padding 1, no bias",
            nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False),
            (16, 8, 8),
            "each output channel sees C_in/groups inputs",
        ),
        (
            "a (3, 5) kernel, stride (2, 1), padding (1, 2) on 6×20×15",
            nn.Conv2d(6, 4, (3, 5), stride=(2, 1), padding=(1, 2)),
            (6, 20, 15),
            "kernel_size, stride, padding and dilation are (height, width) pairs",
        ),
    ]
    for _ in range(20):
        g = pick(1, 2, 4)
        conv = nn.Conv2d(
            g * pick(1, 3, 8),
            g * pick(1, 2, 5),
            pick(1, 3, 5),
            stride=pick(1, 2),
            padding=pick(0, 1, 2),
            dilation=pick(1, 2),
            groups=g,
            bias=pick(True, False),
        )
        cases.append(
            (
                f"random: {conv}",
                conv,
                (conv.in_channels, pick(16, 17, 32), pick(16, 20)),
                "kernel, stride, padding, dilation, groups and bias",
            )
        )
    return cases


def check_conv_cost(fn: Callable) -> bool:
    """Compare ``fn(conv, (C_in, H, W)) -> (parameters, MACs)`` with ``lwt.measure`` on
    worked, edge and random convolutions."""

    def body() -> str:
        cases = _conv_cases()
        for name, conv, shape, cause in cases:
            want = (measure.count_params(conv), measure.count_macs(conv, shape))
            guard = Guard(["measure.py"], hidden_paths=[flop_counter.__file__])
            got = attempt("conv_cost", guard, fn, conv, shape)
            try:
                got = tuple(int(v) for v in got)
            except (TypeError, ValueError):
                fail(
                    "return (parameters, MACs) as two integers",
                    case=name,
                    got=repr(got)[:60],
                )
            if got != want:
                which = "parameters" if got[0] != want[0] else "MACs"
                fail(
                    f"the {which} differ",
                    case=f"{name} on input {shape}",
                    expected=want,
                    got=got,
                    hint=cause,
                )
        return f"your conv_cost agrees with lwt.measure on {len(cases)} convolutions"

    return verdict(body)


def _stand_in(calls: list[float], slow_at: set[int]) -> Callable:
    """A "model" that sleeps 3 ms (20 ms on its first two calls, a cold start; 40 ms
    on the calls in ``slow_at``, a hiccup) and records when it was called."""

    def model(x: object) -> None:
        calls.append(time.perf_counter())
        n = len(calls)
        time.sleep(0.020 if n <= 2 else 0.040 if n in slow_at else 0.003)

    return model


def check_latency(fn: Callable, warmup: int = 3, repeats: int = 15) -> bool:
    """Time a sleeping stand-in with ``fn(model, x, warmup=…, repeats=…)`` and with
    ``lwt.measure.measure_latency``: the number of calls, milliseconds, and a median
    (one 40-ms hiccup among the timed calls must not move it)."""

    def body() -> str:
        hiccup = {warmup + repeats // 2}
        calls: list[float] = []
        mine = attempt(
            "my_latency_ms",
            Guard(["measure.py"]),
            fn,
            _stand_in(calls, hiccup),
            None,
            warmup=warmup,
            repeats=repeats,
        )
        ref = measure.measure_latency(
            _stand_in([], hiccup), None, warmup=warmup, repeats=repeats
        ).median_ms
        if len(calls) != warmup + repeats:
            fail(
                "wrong number of calls",
                expected=f"{warmup} untimed + {repeats} timed",
                got=f"{len(calls)} calls",
                hint="call fn(x) warmup times without timing, then repeats times timed",
            )
        if not isinstance(mine, (int, float)):
            fail("return the median as a float", got=type(mine).__name__)
        if mine < 0.1 * ref:
            fail(
                "far too small",
                expected=f"≈ {ref:.2f} ms",
                got=f"{mine:.5f}",
                hint="seconds? time.perf_counter() counts seconds: multiply by 1000",
            )
        if abs(mine - ref) > 1.0:
            fail(
                "not the median",
                expected=f"≈ {ref:.2f} ms",
                got=f"{mine:.2f} ms",
                hint="a mean (or including the untimed warm-up) is pulled up by slow "
                "calls; statistics.median of the timed calls is not",
            )
        return f"{mine:.2f} ms vs lwt's {ref:.2f} ms, {len(calls)} calls"

    return verdict(body)


__all__ = ["check_conv_cost", "check_latency"]
