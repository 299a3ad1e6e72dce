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


__all__ = ["FEATURES", "cpu_features", "describe_cpu"]
