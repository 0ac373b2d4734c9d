"""Fast ERLA: the block's 1x1 conv with BN folded at inference, the projection shortcut stacked into the first
EMILA's fused conv at inference, residual add and ReLU fused in place."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mailnet.layers.erla import ERLA
from mailnet.layers.fast.bn_fold import FoldCacheOwner, bn_sources, cache_of
from mailnet.layers.fast.fast_emila import FastEMILA
from mailnet.layers.fast.fused_msgdc import fuse_emila, fusion_wanted
from mailnet.layers.fast.ops import conv_bn


class FastERLA(FoldCacheOwner, ERLA):
    """:class:`ERLA` with the same parameters; its EMILA units are swapped separately (to ``FastEMILA``)."""

    def _fused_first(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference: EMILA 1 with the projection shortcut stacked into its fused 1x1 conv (same input, same
        stride), so the shortcut costs no extra convolution. Returns (EMILA 1 output, shortcut)."""
        e, sc = self.emila1, self.shortcut
        sources = e.fusion_sources() + [sc[0].weight, *bn_sources(sc[1])]
        fused = cache_of(self).get("emila1+shortcut", sources, lambda: fuse_emila(e, sc))
        u, p, s = fused(x)
        return e.attend(u, p), s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (isinstance(self.emila1, FastEMILA) and fusion_wanted(x) and self.emila1.can_fuse()
                and isinstance(self.shortcut, nn.Sequential)
                and type(self.shortcut[0]) is nn.Conv2d and self.shortcut[1].running_mean is not None):
            h, sc = self._fused_first(x)
            h = F.relu(self.bn1(h), inplace=True)
            h = self.emila2(h)
            h = conv_bn(self, "conv", self.conv, self.bn2, h)
            return torch.add(h, sc).relu_()
        h = F.relu(self.bn1(self.emila1(x)), inplace=True)
        h = self.emila2(h)
        h = conv_bn(self, "conv", self.conv, self.bn2, h)
        if isinstance(self.shortcut, nn.Identity):
            sc = x
        else:
            sc = conv_bn(self, "shortcut", self.shortcut[0], self.shortcut[1], x)
        return torch.add(h, sc).relu_()
