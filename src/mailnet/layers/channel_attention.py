"""EMILA's channel attention (spec sec. 2.1 step 3), split into logits and gate so that Robust-MAIL can put its
modulated noise between the two."""
from __future__ import annotations

import math

import torch
import torch.nn as nn


class ChannelAttention(nn.Module):
    """Per-channel gate from four global statistics.

    descriptor ``d = (min + mean + max + sum) + (max - mean - min)`` over H x W (written as the reference has it;
    it equals ``2*max + sum``); logits ``z = MLP(d)`` with MLP F -> max(1, F // reduction) (ReLU) -> F;
    gate ``a = sigmoid(scale * z)``, shape (B, F, 1, 1). ``scale`` is one learnable scalar initialised like the
    reference, He-normal for fan-in 1: a truncated normal with std sqrt(2) (so its sign is random).
    """

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))
        self.scale = nn.Parameter(torch.empty(()))
        std = math.sqrt(2.0)
        nn.init.trunc_normal_(self.scale, std=std, a=-2 * std, b=2 * std)

    @staticmethod
    def descriptor(u: torch.Tensor) -> torch.Tensor:
        flat = u.flatten(2)
        mn, mx = flat.amin(dim=2), flat.amax(dim=2)
        mean, total = flat.mean(dim=2), flat.sum(dim=2)
        return (mn + mean + mx + total) + (mx - mean - mn)

    def logits(self, u: torch.Tensor) -> torch.Tensor:
        """z = MLP(descriptor(u)), shape (B, F, 1, 1)."""
        return self.mlp(self.descriptor(u)).unsqueeze(-1).unsqueeze(-1)

    def gate(self, z: torch.Tensor) -> torch.Tensor:
        """a = sigmoid(scale * z)."""
        return torch.sigmoid(self.scale * z)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.gate(self.logits(u))
