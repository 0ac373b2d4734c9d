"""MSGDC: the multi-scale grouped/depthwise convolution at the heart of EMILA, and its projected variant that
EMCAM's spatial branch uses (spec sec. 2.1 step 1 and 2.3 "Mop")."""
from __future__ import annotations

import torch
import torch.nn as nn

from mailnet.layers.channel_shuffle import effective_groups
from mailnet.layers.rpf import make_conv


class MSGDC(nn.Module):
    """Three parallel branches on x, concatenated: grouped 1x1 (C_in -> F), depthwise 3x3, depthwise 5x5, all at
    stride ``s``. Output: ``F + 2*C_in`` channels, in the order [grouped 1x1 | dw3x3 | dw5x5].

    Group count: ``gcd(groups, C_in, F)`` for the grouped 1x1, so channel counts that are not multiples of 16
    (e.g. a 3-channel input or tiny test widths) still work, with fewer groups; the default widths use 16.
    Convs have no bias (each feeds a BN or a linear 1x1 mix). Robust-MAIL options: ``bn=True`` puts a BN after each
    branch; ``rpf_fraction > 0`` makes that fraction of each conv's output filters random projection filters,
    re-drawn at every forward (:class:`mailnet.layers.rpf.RPFConv2d`).
    """

    def __init__(self, in_chans: int, out_chans: int, stride: int = 1, groups: int = 16, bn: bool = False,
                 rpf_fraction: float = 0.0):
        super().__init__()
        self.in_chans, self.out_chans, self.stride = int(in_chans), int(out_chans), int(stride)
        self.groups = effective_groups(effective_groups(in_chans, groups), out_chans)
        self.pointwise = make_conv(in_chans, out_chans, 1, stride, self.groups, rpf_fraction)
        self.dw3 = make_conv(in_chans, in_chans, 3, stride, in_chans, rpf_fraction)
        self.dw5 = make_conv(in_chans, in_chans, 5, stride, in_chans, rpf_fraction)
        self.bn_pointwise = nn.BatchNorm2d(out_chans) if bn else nn.Identity()
        self.bn_dw3 = nn.BatchNorm2d(in_chans) if bn else nn.Identity()
        self.bn_dw5 = nn.BatchNorm2d(in_chans) if bn else nn.Identity()

    @property
    def out_channels(self) -> int:
        return self.out_chans + 2 * self.in_chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.bn_pointwise(self.pointwise(x)),
            self.bn_dw3(self.dw3(x)),
            self.bn_dw5(self.dw5(x)),
        ], dim=1)


class MSGDCProjection(nn.Module):
    """EMCAM's local operator ("Mop"): MSGDC (C -> C, stride 1) then a bias-free 1x1 conv from 3C back to C;
    no BN, no shuffle. Shape-preserving, so it also applies to globally pooled (B, C, 1, 1) descriptors."""

    def __init__(self, channels: int, groups: int = 16):
        super().__init__()
        self.msgdc = MSGDC(channels, channels, stride=1, groups=groups)
        self.project = nn.Conv2d(self.msgdc.out_channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.msgdc(x))
