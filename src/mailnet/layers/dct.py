"""Orthonormal DCT-II along the channel axis, used by EMCAM's frequency branch.

The C x C matrix is fixed (never trained) and cheap to rebuild, so it is held as a *non-persistent* buffer:
it moves with ``.to(device)`` but is not written to checkpoints (state dicts stay free of constants and load
across versions).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn


def dct_matrix(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The orthonormal DCT-II matrix ``D`` (n x n) with ``D @ x == scipy.fft.dct(x, type=2, norm="ortho")``.

    ``D[k, j] = s_k * cos(pi * k * (2j + 1) / (2n))`` with ``s_0 = sqrt(1/n)`` and ``s_k = sqrt(2/n)`` otherwise;
    built in float64, then cast. ``D @ D.T == I``.
    """
    if n < 1:
        raise ValueError(f"DCT size must be >= 1, got {n}")
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    j = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    d = torch.cos(math.pi * k * (2 * j + 1) / (2 * n)) * math.sqrt(2.0 / n)
    d[0] = d[0] / math.sqrt(2.0)
    return d.to(dtype)


class ChannelDCT(nn.Module):
    """Applies the orthonormal DCT-II to the channel vector of every pixel: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = int(channels)
        self.register_buffer("matrix", dct_matrix(self.channels), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.channels:
            raise ValueError(f"ChannelDCT expects {self.channels} channels, got {x.shape[1]}")
        return torch.einsum("kc,bchw->bkhw", self.matrix.to(x.dtype), x)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"
