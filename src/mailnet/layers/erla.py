"""ERLA: the residual block of MAIL's backbone (a ResNet basic block whose convs are EMILA units; spec sec. 2.2)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mailnet.layers.emila import EMILA


class ERLA(nn.Module):
    """h = ReLU(BN(EMILA(x; F, s)));  h = EMILA(h; F, 1);  h = BN(conv1x1(h));
    shortcut = x, or BN(conv1x1_s(x)) when the stride or width changes;  out = ReLU(h + shortcut).

    ``emila_kw`` (groups, reduction, msgdc_bn, rpf_fraction, attention_noise, noise_std) go to both EMILA units.
    """

    def __init__(self, in_chans: int, out_chans: int, stride: int = 1, **emila_kw):
        super().__init__()
        self.emila1 = EMILA(in_chans, out_chans, stride, **emila_kw)
        self.bn1 = nn.BatchNorm2d(out_chans)
        self.emila2 = EMILA(out_chans, out_chans, 1, **emila_kw)
        self.conv = nn.Conv2d(out_chans, out_chans, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chans)
        if stride != 1 or in_chans != out_chans:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(in_chans, out_chans, 1, stride=stride, bias=False), nn.BatchNorm2d(out_chans))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.emila1(x)))
        h = self.emila2(h)
        h = self.bn2(self.conv(h))
        return F.relu(h + self.shortcut(x))
