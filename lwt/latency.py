"""Latency lookup tables (遅延テーブル): predict a cut's time from one profile.

Choosing what to cut by MACs misleads when a kernel's cost is not proportional to its
MACs (notebook 07's profile: an int8 conv at 32x32 does a third of the MACs per
nanosecond of one at 8x8). NetAdapt (Yang et al. 2018) and ProxylessNAS (Cai et al.
2019) instead *measure* each layer once on the target device, keep the times in a
lookup table, and predict a candidate network's latency as the sum of its layers'
entries. Here the table comes from one ONNX Runtime profile of the dense model
(``deploy.profile_onnx``), and a cut of a ResNet is predicted as::

    t(cut) = Σ_convs t_conv · k_block(conv) + t_other

where ``k_block`` is the fraction of a residual block's inner channels kept (0: the
block dropped; 1: untouched). A block's ``conv1`` (its outputs) and ``conv2`` (its
inputs) each do ``k`` times the MACs; the stem, shortcut convs and every other kernel
(adds, pads, quantize/dequantize) are assumed unchanged. The assumption that a conv's
time scales with its MACs is the table's weak point for thin layers: measure the file
you build, and compare.

References: Yang et al. NetAdapt: Platform-Aware Neural Network Adaptation for Mobile
Applications. ECCV 2018. Cai, Zhu, Han. ProxylessNAS: Direct Neural Architecture
Search on Target Task and Hardware. ICLR 2019.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

CONV_OPS = ("QLinearConv", "Conv", "FusedConv", "ConvInteger")
OTHER = "other"


def conv_latency_table(
    profile: Sequence[Mapping], convs: Sequence[str]
) -> dict[str, float]:
    """``{conv name: ms}`` for the model's convolutions, and ``"other"``: the time of
    every other kernel, from one profile (``deploy.profile_onnx`` rows).

    The file's convolutions run in the order of the model's (``convs``, e.g. the
    ``nn.Conv2d`` names of ``model.named_modules()``, forward order for a ResNet), so
    the conv rows are matched to ``convs`` by execution order (``row["order"]``).

    Raises:
        ValueError: the profile has a different number of convolutions than ``convs``.
    """
    rows = sorted((r for r in profile if r["op"] in CONV_OPS), key=lambda r: r["order"])
    if len(rows) != len(convs):
        raise ValueError(f"the profile has {len(rows)} convolutions, convs names "
                         f"{len(convs)}: profile the file of this model")  # fmt: skip
    table = {name: float(r["ms"]) for name, r in zip(convs, rows, strict=True)}
    table[OTHER] = float(sum(r["ms"] for r in profile if r["op"] not in CONV_OPS))
    return table


def block_of(conv: str) -> str | None:
    """The residual block whose inner channels a conv's time follows: ``"layer1.0"``
    for ``layer1.0.conv1`` and ``layer1.0.conv2``; None for any other conv."""
    block, _, leaf = conv.rpartition(".")
    return block if block and leaf in ("conv1", "conv2") else None


def predict_ms(table: Mapping[str, float], keep: Mapping[str, float]) -> float:
    """Predicted time of a cut: ``Σ t_conv · k_block(conv) + t_other`` (module doc).

    Args:
        table: from :func:`conv_latency_table`.
        keep: ``{block: fraction of its inner channels kept}``, in ``[0, 1]`` (0: the
            block dropped); blocks not named keep everything.

    Raises:
        ValueError: a block not in the table, or a fraction outside ``[0, 1]``.
    """
    blocks = {block_of(c) for c in table if c != OTHER} - {None}
    for block, k in keep.items():
        if block not in blocks:
            raise ValueError(f"keep names {block!r}, not a block of the table; "
                             f"choose from {sorted(blocks)}")  # fmt: skip
        if not 0.0 <= k <= 1.0:
            raise ValueError(f"keep[{block!r}] must be in [0, 1], got {k}")
    total = table.get(OTHER, 0.0)
    for conv, ms in table.items():
        if conv != OTHER:
            block = block_of(conv)
            total += ms * (keep.get(block, 1.0) if block else 1.0)
    return total


__all__ = ["CONV_OPS", "OTHER", "block_of", "conv_latency_table", "predict_ms"]
