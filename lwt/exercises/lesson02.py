"""Checks of notebook 02 (quantization): the straight-through estimator and integer
requantization.

Rules the checks enforce (and the notebook states):

- fake quantization computes the code as ``round(x · (1/S)) + Z`` (torch's kernels and
  lwt multiply by the reciprocal), rounds **half to even** (``torch.round``), and passes
  the gradient wherever that *rounded, unclamped* code lies in ``[0, 2^b − 1]`` (up to
  half a step beyond the real range), 0 elsewhere;
- requantization is integers only: ``M = m · 2^e`` (``math.frexp``),
  ``M0 = round(m · 2^31)``, ``n = 31 − e``, ``y = (acc · M0 + 2^(n−1)) >> n`` in int64
  (``>>`` rounds down, also for negative numbers; ties go up), then
  ``clamp(y + Z, 0, 255)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..quantization import integer, primitives
from ._check import Guard, attempt, expect_tensor, fail, verdict

STE_SHORTCUTS = (
    torch.fake_quantize_per_tensor_affine,
    torch.fake_quantize_per_channel_affine,
    torch.quantize_per_tensor,
)


def _ste_cases() -> list[tuple[str, torch.Tensor, float, int, int, str]]:
    """(name, x, S, Z, bits, likely cause if this case fails)."""
    cases = [
        (
            "exact ties: x = (k + 1/2)·S with S = 0.25, Z = 4 (3 bits)",
            torch.arange(-9, 10, dtype=torch.float32) * 0.125,
            0.25,
            4,
            3,
            "ties round half to even (torch.round), not half up (floor(x + 0.5)) or "
            "away "
            "from zero",
        ),
    ]
    S, Z = (float(v) for v in primitives.qparams(-1.0, 1.0, 4))
    cases.append(
        (
            "x = ±0.2 at 4 bits on [−1, 1]: x/S is a tie, x·(1/S) is not",
            torch.tensor([-0.2, 0.2]),
            S,
            int(Z),
            4,
            "compute the code as round(x · (1/S)) like torch and lwt: x / S rounds "
            "differently at this tie",
        )
    )
    S, Z = 0.1, 3  # codes 0..15 cover [-0.3, 1.2]
    edges = torch.tensor([-0.34, -0.36, -0.3, 1.2, 1.24, 1.26, 2.0, -1.0])
    cases.append(
        (
            "half a step beyond the range: codes −0.4, −0.6, 15.4, 15.6 (4 bits)",
            edges,
            S,
            Z,
            4,
            "the gradient passes where the rounded code round(x/S) + Z is in "
            "[0, 2^b − 1] (half a step past the real range), and the value is clamped "
            "to that range",
        )
    )
    gen = torch.Generator().manual_seed(0)
    for t in range(6):
        bits = (2, 4, 8)[t % 3]
        lo, hi = (
            -float(torch.rand(1, generator=gen)) * 2,
            float(torch.rand(1, generator=gen)) * 2,
        )
        s, z = primitives.qparams(lo, hi, bits)
        x = torch.rand(200, generator=gen) * 5 - 2.5
        cases.append(
            (
                f"random x, {bits} bits, range [{lo:.3f}, {hi:.3f}]",
                x,
                float(s),
                int(z),
                bits,
                "S · (clamp(round(x/S) + Z, 0, 2^b − 1) − Z)",
            )
        )
    return cases


def check_ste(fn: type[torch.autograd.Function]) -> bool:
    """Compare ``fn.apply(x, S, Z, bits)`` with lwt's fake quantization: values and
    gradients, on exact ties, half-step boundaries and random inputs."""

    def body() -> str:
        cases = _ste_cases()
        for name, x, S, Z, bits, cause in cases:
            x = x.clone().requires_grad_(True)
            x_ref = x.detach().clone().requires_grad_(True)
            up = torch.arange(
                1, x.numel() + 1, dtype=torch.float32
            )  # any upstream gradient

            def run(x=x, S=S, Z=Z, bits=bits, up=up):
                y = fn.apply(x, S, Z, bits)
                (y * up).sum().backward()
                return y

            y = attempt(
                "MyFakeQuant", Guard(["quantization"], shortcuts=STE_SHORTCUTS), run
            )
            y_ref = primitives.fake_quantize(x_ref, S, Z, bits)
            (y_ref * up).sum().backward()
            expect_tensor(
                y, y_ref.shape, "forward must return a tensor shaped like x", name
            )
            bad = (~torch.isclose(y.detach(), y_ref.detach(), atol=1e-6)).nonzero()
            if len(bad):
                i = int(bad[0])
                fail(
                    "a forward value differs",
                    case=f"{name}; x = {x[i].item():.7g}",
                    expected=f"{y_ref[i].item():.7g}",
                    got=f"{y[i].item():.7g}",
                    hint=cause,
                )
            if x.grad is None:
                fail(
                    "no gradient reached x",
                    case=name,
                    hint="backward returns grad_out masked, then None for S, Z, bits",
                )
            bad = (x.grad != x_ref.grad).nonzero()
            if len(bad):
                i = int(bad[0])
                code = x[i].item() / S + Z
                fail(
                    "a gradient differs",
                    case=f"{name}; x = {x[i].item():.7g} (code x/S + Z = {code:.3f})",
                    expected=f"{x_ref.grad[i].item():g}",
                    got=f"{x.grad[i].item():g}",
                    hint="mask on the rounded code: pass the gradient where "
                    "round(x/S) + Z is in [0, 2^b − 1], block it elsewhere",
                )
        return (
            f"values and gradients match lwt's fake_quantize in {len(cases)} cases "
            "(ties, half-step boundaries, random)"
        )

    return verdict(body)


# ------------------------------------------------------------------ requantization
def _requant_cases() -> list[tuple[str, torch.Tensor, float, int, str]]:
    """(name, accumulators, M, Z, likely cause if this case fails)."""
    gen = torch.Generator().manual_seed(0)
    cases = [
        (
            "worked by hand: M = 0.5, Z = 128, acc = −3 … 3",
            torch.arange(-3, 4),
            0.5,
            128,
            "ties go up (add 2^(n−1), then >>); >> rounds down, also for negative "
            "accumulators (−3 · 0.5 = −1.5 → −1)",
        ),
        (
            "exact ties: M = 0.375, acc = ±4, ±12, …",
            torch.arange(-20, 21, 4),
            0.375,
            100,
            "round half up in integers: (acc · M0 + 2^(n−1)) >> n; a float round is "
            "half to even, and a truncating shift is off by one below zero",
        ),
    ]
    big = torch.cat(
        [
            torch.tensor([-(2**31), 2**31 - 1, -(2**31) + 1, 2**30]),
            torch.randint(-(2**31), 2**31, (4996,), generator=gen),
        ]
    )
    cases.append(
        (
            "accumulators near ±2^31, M = 0.8312·2^−24",
            big,
            0.8312345678901234 * 2.0**-24,
            128,
            "acc · M0 needs about 62 bits: compute in int64 (acc.long()), and keep "
            "M0 a "
            "31-bit integer, round(m · 2^31)",
        )
    )
    for _ in range(6):
        M = float(10 ** (-4 * torch.rand(1, generator=gen)) * 0.5)  # 5e-5 ... 0.5
        span = int(min(120 / M, 2**30))
        acc = torch.randint(-span, span, (1000,), generator=gen)
        zp = int(torch.randint(100, 156, (1,), generator=gen))
        cases.append(
            (
                f"random: M = {M:.6g}, Z = {zp}",
                acc,
                M,
                zp,
                "clamp(Z + ((acc · M0 + 2^(n−1)) >> n), 0, 255)",
            )
        )
    cases.append(
        (
            "clamping: M = 0.01, Z = 3, acc = ±30,000",
            torch.arange(-30000, 30001, 1000),
            0.01,
            3,
            "add the zero point, then clamp to [0, 255]",
        )
    )
    return cases


def check_requantize(fn: Callable) -> bool:
    """Compare ``fn(acc, M, zero_point)`` with ``lwt.quantization.integer.requantize``
    at exact ties, negative accumulators, accumulators near ±2^31, random multipliers
    and clamping; floating-point tensors are rejected."""

    def body() -> str:
        cases, compared = _requant_cases(), 0
        for name, acc, M, zp, cause in cases:
            want = integer.requantize(acc, M, zp, 8)
            got = attempt(
                "my_requantize",
                Guard(["quantization"], integer_only=True),
                fn,
                acc.clone(),
                M,
                zp,
            )
            expect_tensor(
                got, acc.shape, "return a tensor of codes shaped like acc", name
            )
            bad = (got.long() != want).nonzero()
            if len(bad):
                i = int(bad[0])
                off = abs(int(got[i]) - int(want[i]))
                if off > 1:
                    cause = (
                        f"off by {off} codes, not a rounding step: an overflow (int32? "
                        "acc · M0 needs int64) or a wrong M0 or n"
                    )
                fail(
                    f"{len(bad)} of {acc.numel()} codes differ",
                    case=f"{name}; acc = {int(acc[i])}",
                    expected=int(want[i]),
                    got=int(got[i]),
                    hint=cause,
                )
            compared += int(((want > 0) & (want < 255)).sum())
        return (
            f"your integer requantization equals lwt's in {len(cases)} cases "
            f"({compared:,} codes inside (0, 255) compared)"
        )

    return verdict(body)


__all__ = ["check_ste", "check_requantize"]
