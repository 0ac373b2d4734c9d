"""Fast ERLA: the block's 1x1 conv and the projection shortcut with BN folded at inference; residual add and
ReLU fused in place."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mailnet.layers.erla import ERLA
from mailnet.layers.fast.ops import conv_bn


class FastERLA(ERLA):
    """:class:`ERLA` with the same parameters; its EMILA units are swapped separately (to ``FastEMILA``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.emila1(x)), inplace=True)
        h = self.emila2(h)
        h = conv_bn(self, "conv", self.conv, self.bn2, h)
        if isinstance(self.shortcut, nn.Identity):
            sc = x
        else:
            sc = conv_bn(self, "shortcut", self.shortcut[0], self.shortcut[1], x)
        return torch.add(h, sc).relu_()
