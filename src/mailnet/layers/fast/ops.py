"""Small channels-last helpers shared by the fast modules."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mailnet.layers.channel_shuffle import effective_groups
from mailnet.layers.fast.bn_fold import folded_conv_bn, use_folded

CHANNELS_LAST = torch.channels_last


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """4-D tensors in NHWC memory order (a no-op when they already are): oneDNN's depthwise and grouped
    convolutions, and the 5x5 depthwise backward above all, are many times faster there than in NCHW."""
    return x.contiguous(memory_format=CHANNELS_LAST) if x.dim() == 4 else x


def shuffle_channels_last(v: torch.Tensor, groups: int) -> torch.Tensor:
    """:func:`mailnet.layers.channel_shuffle.channel_shuffle` done on the NHWC layout, so the result stays
    channels-last (the reference's reshape/transpose/reshape silently turns a channels-last tensor into NCHW)."""
    b, c, h, w = v.shape
    g = effective_groups(c, groups)
    if g == 1:
        return v
    t = v.permute(0, 2, 3, 1).reshape(b, h, w, g, c // g).transpose(3, 4).reshape(b, h, w, c)
    return t.permute(0, 3, 1, 2)


def conv_bn(owner: nn.Module, key: str, conv: nn.Module, bn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``bn(conv(x))``, with the BN folded into the conv's weight and bias at inference (eval mode, no grad).

    Anything that is not a plain ``nn.Conv2d`` followed by an ``nn.BatchNorm2d`` (a random projection conv, an
    ``Identity`` in place of the BN) runs as the reference does.
    """
    if isinstance(bn, nn.Identity):
        return conv(x)
    if (use_folded(owner) and type(conv) is nn.Conv2d and isinstance(bn, nn.BatchNorm2d)
            and bn.track_running_stats and bn.running_mean is not None):
        w, b = folded_conv_bn(owner, key, conv, bn)
        return F.conv2d(x, w, b, conv.stride, conv.padding, conv.dilation, conv.groups)
    return bn(conv(x))


def spatial_max_plus(u: torch.Tensor, other: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(max over H x W, sum or mean over H x W), each (B, C): two reductions in one place."""
    mx = u.amax(dim=(2, 3))
    rest = u.sum(dim=(2, 3)) if other == "sum" else u.mean(dim=(2, 3))
    return mx, rest
