"""ShuffleNet-style channel shuffle: lets the next grouped conv see channels from every group of the previous one."""
from __future__ import annotations

import math

import torch
import torch.nn as nn


def effective_groups(channels: int, groups: int) -> int:
    """The number of groups actually used for ``channels``: ``gcd(channels, groups)``.

    Channel counts that are not multiples of ``groups`` (e.g. 3-channel inputs, or tiny test widths) then still
    work, with as many groups as divide them; for the default widths (multiples of 16) this is ``groups`` itself.
    """
    return max(1, math.gcd(int(channels), int(groups)))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Reorder channels (B, g*n, H, W) -> view (B, g, n) -> transpose -> (B, n*g): channel ``j*n + i`` moves to
    ``i*g + j``. ``groups`` is reduced to ``gcd(C, groups)`` when it does not divide the channel count."""
    b, c = x.shape[0], x.shape[1]
    g = effective_groups(c, groups)
    if g == 1:
        return x
    rest = x.shape[2:]
    return x.reshape(b, g, c // g, *rest).transpose(1, 2).reshape(b, c, *rest)


class ChannelShuffle(nn.Module):
    """Module form of :func:`channel_shuffle` (no parameters)."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = int(groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"
