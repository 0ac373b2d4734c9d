"""EMILA: efficient multi-scale conv + channel attention unit inside every ERLA block (spec sec. 2.1; the
Robust-MAIL variant of sec. 3.2)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from mailnet.layers.channel_attention import ChannelAttention
from mailnet.layers.channel_shuffle import ChannelShuffle
from mailnet.layers.msgdc import MSGDC
from mailnet.layers.noise import ModulatedNoise


class EMILA(nn.Module):
    """x (B, C_in, H, W) -> (B, F, H/s, W/s).

    u = BN(conv1x1_groups2(shuffle_g(MSGDC(x))));  z = ChannelAttention.logits(u);  a = sigmoid(scale * z)
    plain:  out = ReLU(BN(conv1x1_s(x)) + u * a)
    robust (``attention_noise=True``), with noise N = w*(n + n^2), n ~ N(0, noise_std^2), w = 1 fixed:
            z <- clip(z + N, 0, 1);  r = ReLU(BN(conv1x1_s(x)) + u * a);  S = clip(r + N', 0, 1);  out = u * (S*a)^3

    The 1x1 mix uses ``gcd(2, F + 2*C_in, F)`` groups (2 for any even F). ``msgdc_bn`` and ``rpf_fraction`` are
    passed to :class:`MSGDC` (Robust-MAIL: BN in its branches and random projection filters).
    """

    def __init__(self, in_chans: int, out_chans: int, stride: int = 1, groups: int = 16, reduction: int = 4,
                 msgdc_bn: bool = False, rpf_fraction: float = 0.0, attention_noise: bool = False,
                 noise_std: float = 0.6):
        super().__init__()
        self.msgdc = MSGDC(in_chans, out_chans, stride, groups, bn=msgdc_bn, rpf_fraction=rpf_fraction)
        mixed = self.msgdc.out_channels
        self.shuffle = ChannelShuffle(groups)
        self.mix = nn.Conv2d(mixed, out_chans, 1, groups=math.gcd(2, math.gcd(mixed, out_chans)), bias=False)
        self.mix_bn = nn.BatchNorm2d(out_chans)
        self.attention = ChannelAttention(out_chans, reduction)
        self.proj = nn.Conv2d(in_chans, out_chans, 1, stride=stride, bias=False)
        self.proj_bn = nn.BatchNorm2d(out_chans)
        self.attention_noise = bool(attention_noise)
        if self.attention_noise:
            self.logit_noise = ModulatedNoise(noise_std, 1.0, trainable=False)
            self.output_noise = ModulatedNoise(noise_std, 1.0, trainable=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.mix_bn(self.mix(self.shuffle(self.msgdc(x))))
        z = self.attention.logits(u)
        if self.attention_noise:
            z = self.logit_noise(z)
        a = self.attention.gate(z)
        r = F.relu(self.proj_bn(self.proj(x)) + u * a)
        if not self.attention_noise:
            return r
        s = self.output_noise(r)
        return u * (s * a) ** 3
