"""Weight-only group-wise quantization of a trained model, in one shot (no training):
RTN, GPTQ or AWQ from calibration images, shipped as the packed ``.lwtq`` file.

The shipped file is the packed file itself (its bytes are the model's real size); the
zoo loads it as the float model it decodes to (``oneshot.packed_state_dict``), which
computes what the quantized model computes, and the manifest's accuracy is that
model's. References: Frantar et al. GPTQ, ICLR 2023; Lin et al. AWQ, MLSys 2024.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from .. import models, oneshot
from ._common import Result, calibration_batches

SUFFIX = ".lwtq"


@dataclass(frozen=True)
class Config:
    """Settings of a weight-only quantization of a shipped model."""

    METHOD: ClassVar[str] = "weightonly"
    base: str  # the shipped model (e.g. cct-cifar)
    model: str  # its lwt.models architecture
    bits: int = 4
    group_size: int = 64
    method: str = "gptq"  # "rtn", "gptq" or "awq"
    calibration: int = 512  # training images, no augmentation
    seed: int = 0


METHOD = Config.METHOD


def build(config: Config, arch: dict) -> nn.Module:
    """The base's float architecture: the file decodes to its state dict."""
    return models.create_model(config.model)


def to_bytes(model: nn.Module) -> bytes:
    """The shipped file: the model's ``GroupQuantized`` layers packed."""
    return oneshot.to_packed(model)


def from_bytes(blob: bytes) -> dict[str, Tensor]:
    """The float state dict a shipped ``.lwtq`` file decodes to (checked first)."""
    return oneshot.packed_state_dict(blob)


def run(
    config: Config,
    base: nn.Module,
    *,
    epochs_scale: float = 1.0,
    subset: int | None = None,
    quiet: bool = True,
) -> Result:
    """Quantize ``base``'s weights layer by layer, pack, and load the packed bytes
    back (so the model returned is exactly what the file holds)."""
    batches = calibration_batches(config.model, config.calibration, config.seed)
    q = oneshot.quantize_weights(base.cpu().eval(), batches, bits=config.bits,
                                 group_size=config.group_size,
                                 method=config.method)  # fmt: skip
    blob = oneshot.to_packed(q)
    model = oneshot.load_packed(blob, build(config, {}))
    schedule = [{"bits": config.bits, "group_size": config.group_size,
                 "method": config.method, "calibration_images": config.calibration,
                 "bytes": len(blob)}]  # fmt: skip
    return Result(model.eval(), 0, schedule=schedule)
