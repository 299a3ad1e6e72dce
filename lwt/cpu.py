"""What this CPU can do fast: the instruction-set features behind int8 and bf16 speed.

A latency figure means little without the hardware: int8 kernels are fast on CPUs with
VNNI (a fused 8-bit multiply-add) and faster still with AMX (Intel's matrix tiles); bf16
runs at hardware speed only with AVX-512 BF16 or AMX-BF16, and is emulated (slowly)
elsewhere. ``cpu_features`` reads them from the operating system (Linux
``/proc/cpuinfo``); elsewhere it says "unknown" rather than guess.
"""

from __future__ import annotations

from pathlib import Path

# feature -> the /proc/cpuinfo flags that provide it (any one suffices)
FEATURES: dict[str, tuple[str, ...]] = {
    "AVX2": ("avx2",),
    "AVX-512": ("avx512f",),
    "VNNI": ("avx512_vnni", "avx_vnni"),
    "AVX-512 BF16": ("avx512_bf16",),
    "AMX-BF16": ("amx_bf16",),
    "AMX-INT8": ("amx_int8",),
}


def cpu_features(cpuinfo: str | None = None) -> dict[str, bool | None]:
    """``{feature: True/False}`` for each of ``FEATURES``; ``None`` values if unknown.

    Args:
        cpuinfo: the text of ``/proc/cpuinfo`` (default: read it; on a system without
            it every feature is ``None``). Its first ``flags`` (x86) or ``Features``
            (ARM) line is used.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            flags = set(value.split())
            break
    if not flags:
        return dict.fromkeys(FEATURES)
    return {name: any(f in flags for f in fs) for name, fs in FEATURES.items()}


def describe_cpu(features: dict[str, bool | None] | None = None) -> str:
    """One line for a ledger header, e.g. ``"CPU: AVX2, VNNI (no AVX-512, ...)"``."""
    features = cpu_features() if features is None else features
    if all(v is None for v in features.values()):
        return "CPU features: unknown (no /proc/cpuinfo)"
    have = [k for k, v in features.items() if v]
    lacks = [k for k, v in features.items() if v is False]
    text = "CPU: " + (", ".join(have) if have else "none of " + ", ".join(FEATURES))
    return text + (f" (no {', '.join(lacks)})" if have and lacks else "")


def clock_ghz(cpuinfo: str | None = None) -> float | None:
    """The clock ``/proc/cpuinfo`` reports for the first core ("cpu MHz"), in GHz
    (None where there is no such file or line). A nominal figure: turbo and power
    states move the real clock."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        if line.startswith("cpu MHz"):
            return float(line.split(":")[1]) / 1000
    return None


# Nominal multiply-adds per clock cycle of one core, by precision and instruction set
# (notebook 02 turns them into lower bounds on the time of a forward pass).
PEAK_MACS_PER_CYCLE = {
    "fp32, AVX-512": 32,
    "bf16, AVX-512 BF16": 64,
    "int8, AVX-512 VNNI": 128,
    "bf16, AMX": 512,
    "int8, AMX": 1024,
}

__all__ = [
    "FEATURES",
    "PEAK_MACS_PER_CYCLE",
    "clock_ghz",
    "cpu_features",
    "describe_cpu",
]
