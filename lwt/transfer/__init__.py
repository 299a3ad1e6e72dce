"""Transferred filters (転移フィルター): a filter bank made from fewer free filters.

- ``crelu``: CReLU (Shang et al. 2016): learn C/2 filters, output ReLU([z, −z]);
  ``to_crelu`` converts chosen conv → BN → ReLU layers of any model.
- ``rotations``: group-equivariant convolutions (Cohen & Welling 2016): the bank is
  the base filters under the 4 rotations (``p4``) or rotations and mirrors (``p4m``);
  lifting and group convs, group BatchNorm and pooling, ``freeze`` to a plain conv,
  and ``P4CNN``, the rotated-MNIST network.

Copy this folder into your project to use it: it depends only on torch.
"""

from . import crelu, rotations
from .crelu import CReLUConv2d, to_crelu
from .rotations import (
    GROUPS,
    P4CNN,
    GroupBatchNorm2d,
    GroupConv2d,
    LiftingConv2d,
    compose,
    freeze,
    group_bank,
    group_pool,
    inverse,
    lifting_bank,
    transform,
)

__all__ = [
    "GROUPS",
    "CReLUConv2d",
    "GroupBatchNorm2d",
    "GroupConv2d",
    "LiftingConv2d",
    "P4CNN",
    "compose",
    "crelu",
    "freeze",
    "group_bank",
    "group_pool",
    "inverse",
    "lifting_bank",
    "rotations",
    "to_crelu",
    "transform",
]
