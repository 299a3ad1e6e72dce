"""The course's baseline models.

- ``lenet300``: LeNet-300-100, a 784-300-100-10 MLP (266,610 parameters), as in
  LeCun et al. 1998 and Han et al. 2015 ("Learning both Weights and Connections").
- ``lenet5``: the Caffe LeNet-5 used by Han et al. 2015 / Deep Compression: conv 20@5x5,
  max-pool, conv 50@5x5, max-pool, fc 500, ReLU, fc 10 (431,080 parameters).
- ``resnet20``: ResNet-20 for CIFAR-10 (He et al. 2016, Sec. 4.2): 3 stages of 3 basic
  blocks with 16/32/64 channels, parameter-free "option A" shortcuts (stride-2
  subsampling + zero channel padding), 269,722 parameters. ``resnet56`` is the deeper
  sibling (853,018 parameters), a natural teacher.

A transformer (lesson 08), in ``lwt.models.cct``:

- ``cct4``: a Compact Convolutional Transformer (Hassani et al. 2021): a conv
  tokenizer, 4 pre-norm encoder blocks of 4 heads on 64 tokens, sequence pooling
  (483,659 parameters).

Compact students for knowledge distillation (lesson 05), each <= 20 % of ResNet-20:

- ``mobilenet``: a MobileNet-style CIFAR net (Howard et al. 2017): a 3x3 stem, then
  depthwise-separable blocks (3x3 depthwise + 1x1 pointwise, each BN + ReLU).
- ``resnet14w8``: a thin ResNet-14 (stages of 8/16/32 channels, 43,634 parameters).
- ``mlp1200`` / ``mlp800``: Hinton et al.'s (2015) MNIST teacher (784-1200-1200-10 with
  dropout) and student (784-800-800-10).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock
from torchvision.ops.misc import Conv2dNormActivation

from .._lookup import lookup
from ..data import SHAPES
from .cct import CCT


class LeNet300100(nn.Module):
    """LeNet-300-100: ``x (N, 1, 28, 28) -> fc 300 -> fc 100 -> fc 10`` with ReLUs."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)  # (N, 784)
        x = torch.relu(self.fc1(x))  # (N, 300)
        x = torch.relu(self.fc2(x))  # (N, 100)
        return self.fc3(x)  # (N, 10)


class LeNet5(nn.Module):
    """Caffe LeNet-5: no ReLU after the convolutions (Caffe's ``lenet.prototxt``)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(50 * 4 * 4, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.conv1(x))  # (N, 20, 12, 12)
        x = self.pool(self.conv2(x))  # (N, 50, 4, 4)
        x = torch.relu(self.fc1(x.flatten(1)))  # (N, 500)
        return self.fc2(x)  # (N, 10)


class PadShortcut(nn.Module):
    """He et al.'s option-A shortcut: subsample by ``stride`` and zero-pad channels.

    ``y[:, :C_in] = x[:, :, ::s, ::s]``; ``y[:, C_in:] = 0``. No parameters.
    """

    def __init__(self, out_channels: int, stride: int) -> None:
        super().__init__()
        self.out_channels, self.stride = out_channels, stride

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # (N, C_in, H/s, W/s)
        extra = self.out_channels - x.shape[1]
        return nn.functional.pad(x, (0, 0, 0, 0, 0, extra))  # (N, C_out, H/s, W/s)

    def extra_repr(self) -> str:
        return f"out_channels={self.out_channels}, stride={self.stride}"


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs (He et al. 2016, Sec. 4.2).

    Args:
        depth: 6n+2 layers (20, 32, 44, 56, 110).
        num_classes: output classes.
        width: channels of the first stage (16 in the paper); stages use w, 2w, 4w.
    """

    def __init__(self, depth: int = 20, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(
                f"depth must be 6n+2 with n >= 1 (20, 32, 56...), got {depth}"
            )
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.in_planes = width
        self.layer1 = self._stage(width, n, 1)
        self.layer2 = self._stage(2 * width, n, 2)
        self.layer3 = self._stage(4 * width, n, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for i in range(blocks):
            s = stride if i == 0 else 1
            shortcut = (
                PadShortcut(planes, s) if (s != 1 or self.in_planes != planes) else None
            )
            layers.append(BasicBlock(self.in_planes, planes, s, downsample=shortcut))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (N, 16, 32, 32)
        x = self.layer3(self.layer2(self.layer1(x)))  # (N, 64, 8, 8)
        return self.fc(self.avgpool(x).flatten(1))  # (N, 10)


class MobileNetCifar(nn.Module):
    """MobileNet-style network for 32x32 inputs (Howard et al. 2017, "MobileNets").

    A depthwise-separable block replaces a ``k x k`` conv (``C_in * C_out * k^2``
    weights) by a depthwise ``k x k`` conv (``C_in * k^2``) and a pointwise ``1 x 1``
    conv (``C_in * C_out``): about ``1/C_out + 1/k^2`` of the weights and MACs.

    Args:
        blocks: ``(out_channels, stride)`` of each depthwise-separable block.
        stem: channels of the first (plain 3x3) convolution.
        num_classes: output classes.
    """

    def __init__(
        self,
        blocks: tuple[tuple[int, int], ...] = ((64, 1), (128, 2), (128, 1), (128, 2)),
        stem: int = 32,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [Conv2dNormActivation(3, stem, 3)]
        c = stem
        for out, stride in blocks:
            layers += [
                Conv2dNormActivation(c, c, 3, stride, groups=c),  # depthwise
                Conv2dNormActivation(c, out, 1),  # pointwise
            ]
            c = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)  # (N, 128, 8, 8)
        return self.fc(self.avgpool(x).flatten(1))  # (N, 10)


class MLP(nn.Module):
    """``784 -> hidden -> ... -> 10`` with ReLUs and optional dropout (Hinton et al.
    2015 use dropout 0.2 on the input and 0.5 on hidden units for the teacher)."""

    def __init__(
        self,
        hidden: tuple[int, ...],
        *,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten(), nn.Dropout(input_dropout)]
        prev = 28 * 28
        for h in hidden:
            layers += [nn.Linear(prev, h), nn.ReLU(), nn.Dropout(dropout)]
            prev = h
        layers.append(nn.Linear(prev, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # (N, 10)


class Z2CNN(nn.Module):
    """Cohen & Welling 2016's plain CNN for rotated MNIST: seven valid convolutions
    of ``channels`` filters (3×3, the last 4×4 onto the classes), BN and ReLU
    between, a 2×2 max pool after the second: 28 → 26 → 24 → 12 → 10 → 8 → 6 → 4
    → 1. The baseline of ``lwt.transfer.P4CNN`` (the same layout on p4 maps)."""

    def __init__(self, channels: int = 20, num_classes: int = 10) -> None:
        super().__init__()
        c = channels
        layers: list[nn.Module] = [nn.Conv2d(1, c, 3, bias=False)]
        for i in range(5):
            layers += [nn.BatchNorm2d(c), nn.ReLU()]
            if i == 1:
                layers.append(nn.MaxPool2d(2))
            layers.append(nn.Conv2d(c, c, 3, bias=False))
        layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, num_classes, 4)]
        self.features = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x).flatten(1)  # (N, 10)


MODELS: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "lenet300": (LeNet300100, "mnist"),
    "lenet5": (LeNet5, "mnist"),
    "resnet20": (lambda: CifarResNet(20), "cifar10"),
    "resnet56": (lambda: CifarResNet(56), "cifar10"),
    "mobilenet": (MobileNetCifar, "cifar10"),
    "resnet14w8": (lambda: CifarResNet(14, width=8), "cifar10"),
    # dropout 0.25 on hidden units only: Hinton's 0.5 + 0.2 on the input (with the
    # jitter) underfit in a CPU budget (a 60-epoch trial: 145 test errors)
    "mlp1200": (lambda: MLP((1200, 1200), dropout=0.25), "mnist"),
    "mlp800": (lambda: MLP((800, 800)), "mnist"),
    "z2cnn": (Z2CNN, "rotmnist"),
    # a compact transformer (lesson 08): CCT-4/3x2 (Hassani et al. 2021) with 4 heads
    "cct4": (CCT, "cifar10"),
}


def create_model(name: str) -> nn.Module:
    """Build a fresh (randomly initialised) model by name; see ``MODELS``."""
    return lookup(MODELS, name, "model name")[0]()


def dataset_of(name: str) -> str:
    """The dataset a model name is trained on (``"mnist"``, ``"rotmnist"`` or
    ``"cifar10"``)."""
    return lookup(MODELS, name, "model name")[1]


def input_shape_of(name: str) -> tuple[int, int, int]:
    """``(C, H, W)`` of one input image of a model."""
    return SHAPES[dataset_of(name)]
