"""Rotation and flip filter banks: group-equivariant convolutions (p4, p4m).

Cohen & Welling 2016, "Group Equivariant Convolutional Networks". Learn a few base
filters; the bank is the base filters under every transform ``g`` of a group ``G``:
``p4`` = the 4 rotations by 90°, ``p4m`` = those and their mirror images (8). A
feature map then has one plane per transform, stored as ``C·|G|`` ordinary channels
(channel ``c·|G| + g``), so the layers below are plain ``conv2d`` calls.

    lifting (image → G):  out[o, g]  = (T_g w[o]) ⋆ x
    group conv (G → G):   out[o, g]  = Σ_{i, h} (T_g w[o, i, g⁻¹h]) ⋆ f[i, h]

``T_g`` rotates (and flips) a k×k filter; ``g⁻¹h`` cyclically shifts the input's
transform axis. Both layers are equivariant: transforming the input by ``u``
transforms every output plane by ``u`` and permutes the planes ``g → u⁻¹g``. Pooling
over the planes (:func:`group_pool`) then gives maps that merely move with ``u``.

The bank is generated from the base parameters on every forward (differentiable:
gradients reach only the base filters); :func:`freeze` replaces each layer by an
``nn.Conv2d`` holding the generated bank, for deployment and ONNX export.
Free parameters: ``|G|`` times fewer than the effective conv; MACs: the effective
conv's.

Depends only on torch: copy this folder into your project.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

# A transform (m, r): mirror left-right if m, then rotate by r·90° counter-clockwise.
GROUPS: dict[str, tuple[tuple[int, int], ...]] = {
    "p4": tuple((0, r) for r in range(4)),
    "p4m": tuple((m, r) for m in (0, 1) for r in range(4)),
}


def _group(group: str) -> tuple[tuple[int, int], ...]:
    if group not in GROUPS:
        raise ValueError(f"group must be one of {sorted(GROUPS)}, got {group!r}")
    return GROUPS[group]


def transform(x: Tensor, g: tuple[int, int]) -> Tensor:
    """``T_g x`` on the last two (square) dims: mirror if ``g[0]``, then rotate
    ``g[1]`` times by 90° (``torch.rot90``, counter-clockwise)."""
    m, r = g
    return torch.rot90(x.flip(-1) if m else x, r, dims=(-2, -1))


def compose(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    """``a·b`` (apply ``b`` first): ``R^a F^m R^b F^n = R^(a + (−1)^m b) F^(m+n)``."""
    return (a[0] + b[0]) % 2, (a[1] + (-b[1] if a[0] else b[1])) % 4


def inverse(g: tuple[int, int]) -> tuple[int, int]:
    """``g⁻¹``: a rotation's inverse turns back; a mirror-rotation is its own."""
    return g if g[0] else (0, -g[1] % 4)


def lifting_bank(weight: Tensor, group: str) -> Tensor:
    """``(O, I, k, k)`` base filters → ``(O·|G|, I, k, k)``: row ``o·|G| + g`` is
    ``T_g w[o]``."""
    gs = _group(group)
    return torch.stack([transform(weight, g) for g in gs], 1).flatten(0, 1)


def group_bank(weight: Tensor, group: str) -> Tensor:
    """``(O, I, |G|, k, k)`` base filters → ``(O·|G|, I·|G|, k, k)``: the filter of
    output plane ``(o, g)`` on input plane ``(i, h)`` is ``T_g w[o, i, g⁻¹h]``."""
    gs = _group(group)
    index = {g: j for j, g in enumerate(gs)}
    rows = []
    for g in gs:
        order = [index[compose(inverse(g), h)] for h in gs]
        rows.append(transform(weight[:, :, order], g))  # (O, I, |G|, k, k)
    return torch.stack(rows, 1).flatten(0, 1).flatten(1, 2)


class _GroupConv(nn.Module):
    """Shared parts: base weight, one bias per output field, the generated conv."""

    LIFTING: bool

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        group: str = "p4",
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
    ) -> None:
        n = len(_group(group))
        if not isinstance(kernel_size, int) or kernel_size < 1:
            raise ValueError(
                f"kernel_size must be one positive int (square kernels: a rotated "
                f"k1×k2 filter would not fit), got {kernel_size!r}"
            )
        if in_channels < 1 or out_channels < 1:
            raise ValueError("in_channels and out_channels must be >= 1")
        super().__init__()
        self.group = group
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride, self.padding = stride, padding
        shape = (out_channels, in_channels) + (() if self.LIFTING else (n,))
        self.weight = nn.Parameter(torch.empty(*shape, kernel_size, kernel_size))
        # fan-in I·k² (lifting) or I·|G|·k² (group conv): that of the effective conv
        nn.init.kaiming_normal_(self.weight, nonlinearity="relu")
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def bank(self) -> Tensor:
        """The effective ``nn.Conv2d`` weight, generated from the base filters."""
        if self.LIFTING:
            return lifting_bank(self.weight, self.group)
        return group_bank(self.weight, self.group)

    def _bias(self) -> Tensor | None:
        n = len(GROUPS[self.group])
        return None if self.bias is None else self.bias.repeat_interleave(n)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.bank(), self._bias(), self.stride, self.padding)

    def extra_repr(self) -> str:
        k = self.weight.shape[-1]
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={k}, "
            f"group={self.group}, stride={self.stride}, padding={self.padding}"
        )


class LiftingConv2d(_GroupConv):
    """Images → group feature maps: ``out_channels`` fields of ``|G|`` planes each,
    from ``out_channels`` learned ``k×k`` filters and their transforms.

    Args:
        in_channels: image channels.
        out_channels: output fields (the conv has ``out_channels·|G|`` channels).
        kernel_size: one int (square filters only).
        group: ``"p4"`` (4 rotations) or ``"p4m"`` (and mirrors: 8).
        stride, padding, bias: as ``nn.Conv2d`` (one bias per field).
    """

    LIFTING = True


class GroupConv2d(_GroupConv):
    """Group feature maps → group feature maps (``in_channels`` fields in,
    ``out_channels`` out, ``|G|`` planes each); base filters ``(O, I, |G|, k, k)``.
    Arguments as :class:`LiftingConv2d`."""

    LIFTING = False


class GroupBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm with one mean, variance, scale and shift per field, shared by its
    ``|G|`` planes (a per-plane BN would break equivariance)."""

    def __init__(self, channels: int, *, group: str = "p4") -> None:
        super().__init__(channels)
        self.group_size = len(_group(group))

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        y = super().forward(x.reshape(n, c // self.group_size, self.group_size * h, w))
        return y.reshape(n, c, h, w)


def group_pool(x: Tensor, group: str, *, reduce: str = "max") -> Tensor:
    """``(N, C·|G|, H, W)`` → ``(N, C, H, W)``: max (or mean) over a field's planes."""
    n, c, h, w = x.shape
    planes = x.reshape(n, c // len(_group(group)), len(GROUPS[group]), h, w)
    if reduce == "max":
        return planes.amax(2)
    if reduce == "mean":
        return planes.mean(2)
    raise ValueError(f"reduce must be 'max' or 'mean', got {reduce!r}")


def freeze(model: nn.Module) -> nn.Module:
    """Replace every :class:`LiftingConv2d` / :class:`GroupConv2d` in ``model`` by
    an ``nn.Conv2d`` holding its generated bank (in place; the same outputs)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, _GroupConv):
            bank = module.bank().detach()
            conv = nn.Conv2d(
                bank.shape[1],
                bank.shape[0],
                bank.shape[-1],
                module.stride,
                module.padding,
                bias=module.bias is not None,
            ).to(bank.device)
            conv.weight.data.copy_(bank)
            if module.bias is not None:
                conv.bias.data.copy_(module._bias().detach())
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, conv)
    return model


class P4CNN(nn.Module):
    """Cohen & Welling's rotated-MNIST network: a lifting layer and six group convs
    (3×3, then 4×4), BN and ReLU between, one 2×2 max pool after layer 2, pooling
    over the planes at the end: 28×28 → 10 logits, invariant to 90° rotations.
    Free weights: 24,620 with ``channels=10`` (p4), more than the 21,630 of the plain
    20-channel CNN (``lwt.models.create_model("z2cnn")``); ``channels=9`` (20,539, the
    shipped ``rotmnist-p4cnn``) is the widest p4 model with no more than it."""

    def __init__(
        self, channels: int = 10, *, group: str = "p4", num_classes: int = 10
    ) -> None:
        super().__init__()
        self.group = group
        c = channels
        layers: list[nn.Module] = [LiftingConv2d(1, c, 3, group=group, bias=False)]
        for i in range(5):
            layers += [GroupBatchNorm2d(c, group=group), nn.ReLU()]
            if i == 1:
                layers.append(nn.MaxPool2d(2))
            layers.append(GroupConv2d(c, c, 3, group=group, bias=False))
        layers += [GroupBatchNorm2d(c, group=group), nn.ReLU()]
        layers.append(GroupConv2d(c, num_classes, 4, group=group))
        self.features = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return group_pool(self.features(x), self.group).flatten(1)
