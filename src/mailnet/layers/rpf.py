"""Random projection filters (after Dong & Xu, CVPR 2023): part of a conv's filters are not learned but drawn
afresh from N(0, (1/k)^2) at every forward pass, so an attacker never sees the exact network that will score
the input (Robust-MAIL, spec sec. 3.1)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from mailnet.layers.noise import Stochastic


def random_filter_indices(out_channels: int, fraction: float) -> torch.Tensor:
    """Which output filters are random: ``round(fraction * out_channels)`` of them, evenly spaced.

    Even spacing spreads them over the groups of a grouped conv (e.g. one per group for a 16-group conv with
    64 filters at fraction 0.25) instead of making whole groups random.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"random projection fraction must be in [0, 1], got {fraction}")
    n = int(round(fraction * out_channels))
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    # from python values (not torch.arange), so the indices stay real when a model's shapes are counted on the
    # meta device (mailnet.engine.runs.count_weights)
    return torch.tensor([math.floor(i * (out_channels / n)) for i in range(n)], dtype=torch.long)


class RPFConv2d(Stochastic):
    """A bias-free ``Conv2d`` in which a fixed set of output filters (see :func:`random_filter_indices`) get
    kernels drawn from N(0, (1/k)^2) at every forward, train or eval mode; the others are ordinary parameters.

    Only the learned filters are parameters (``weight`` has ``out_channels - n_random`` rows), so every parameter
    receives a gradient. The random filters' bias is zero (the conv has no bias at all, as it feeds a BN or a
    linear 1x1 mix in MAIL). ``fraction=0`` behaves exactly like ``nn.Conv2d(..., bias=False)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 groups: int = 1, fraction: float = 0.25):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding, self.groups = int(kernel_size), int(stride), int(padding), int(groups)
        self.fraction = float(fraction)
        rand_idx = random_filter_indices(out_channels, fraction).tolist()
        random_set = set(rand_idx)
        learn_idx = [j for j in range(out_channels) if j not in random_set]
        # order = [learned..., random...]; `inverse` puts filter j of that concatenation back at its true position
        # (plain python, so the buffer stays real when shapes are counted on the meta device)
        inverse = [0] * out_channels
        for position, j in enumerate(learn_idx + rand_idx):
            inverse[j] = position
        self.register_buffer("inverse", torch.tensor(inverse, dtype=torch.long), persistent=False)
        self.n_random = len(rand_idx)
        k = self.kernel_size
        self.weight = nn.Parameter(torch.empty(len(learn_idx), in_channels // groups, k, k))
        # the same init nn.Conv2d uses (kaiming-uniform with a=sqrt(5)) for the learned filters
        if self.weight.numel():
            nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        self.std = 1.0 / k

    @property
    def active(self) -> bool:
        return self.n_random > 0

    def full_weight(self, ref: torch.Tensor) -> torch.Tensor:
        """This forward's complete kernel: learned filters plus a fresh random draw, in output-channel order."""
        if self.n_random == 0:
            return self.weight
        shape = (self.n_random,) + tuple(self.weight.shape[1:])
        if self.expected:  # zero-mean kernels: their expected value is 0
            rand = torch.zeros(shape, dtype=self.weight.dtype, device=self.weight.device)
        else:
            rand = self.randn(shape, ref) * self.std
        return torch.cat([self.weight, rand.to(self.weight.dtype)], dim=0).index_select(0, self.inverse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.full_weight(x)
        return F.conv2d(x, w, None, self.stride, self.padding, 1, self.groups)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}, random={self.n_random}/{self.out_channels}")


def make_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
              rpf_fraction: float = 0.0) -> nn.Module:
    """A bias-free 'same'-padded conv: plain ``nn.Conv2d`` when ``rpf_fraction == 0``, else :class:`RPFConv2d`."""
    pad = kernel_size // 2
    if rpf_fraction > 0:
        return RPFConv2d(in_channels, out_channels, kernel_size, stride, pad, groups, rpf_fraction)
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, pad, groups=groups, bias=False)
