"""DRIFA-Net style attention (Dhar et al., WACV 2025), from the published description summarised in the design doc,
section 6. It is the authors' earlier dual attention that MAIL's EMCAM replaces, kept as a baseline:

- ``MultiBranchFusionAttention``: one per modality; a channel map from a global part (a chain of 1x1 sigmoid convs,
  each output globally pooled) and a local part (1x1 sigmoid conv, spatial mean, 1x1 sigmoid conv, mean);
- ``MultimodalSharedAttention``: one map computed from all modalities (min/mean/max poolings summed over
  modalities) and multiplied into every branch.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

GLOBAL_CHAIN = 4


def _pool_max_plus_mean(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C): global max pooling plus global average pooling."""
    return x.amax(dim=(2, 3)) + x.mean(dim=(2, 3))


def _pool_min_mean_max(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, C, H, W) -> three (B, C) global poolings."""
    return x.amin(dim=(2, 3)), x.mean(dim=(2, 3)), x.amax(dim=(2, 3))


class MultiBranchFusionAttention(nn.Module):
    """Per-modality channel attention: y = x * sigmoid(gamma * global + lambda * local) * alpha.

    Global part: four chained ``sigmoid(conv1x1)``; each output is max- plus average-pooled, the four (B, C) vectors
    are concatenated and a Linear(4C -> C) + sigmoid gives the global map. Local part: ``sigmoid(conv1x1)``, spatial
    mean, ``sigmoid(conv1x1)``, spatial mean (a no-op on the 1x1 map, kept so the part is (B, C, 1, 1) whatever
    the input). gamma and lambda are learnable scalars, alpha a learnable per-channel scale (all initialised to 1).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.chain = nn.ModuleList(nn.Conv2d(channels, channels, 1) for _ in range(GLOBAL_CHAIN))
        self.global_fc = nn.Linear(GLOBAL_CHAIN * channels, channels)
        self.local_in = nn.Conv2d(channels, channels, 1)
        self.local_out = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.ones(()))
        self.lam = nn.Parameter(torch.ones(()))
        self.alpha = nn.Parameter(torch.ones(1, channels, 1, 1))

    def channel_map(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, C, 1, 1) map before it is applied."""
        pooled = []
        h = x
        for conv in self.chain:
            h = torch.sigmoid(conv(h))
            pooled.append(_pool_max_plus_mean(h))
        g = torch.sigmoid(self.global_fc(torch.cat(pooled, dim=1)))[:, :, None, None]
        l = torch.sigmoid(self.local_in(x)).mean(dim=(2, 3), keepdim=True)
        l = torch.sigmoid(self.local_out(l)).mean(dim=(2, 3), keepdim=True)
        return torch.sigmoid(self.gamma * g + self.lam * l)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.channel_map(x) * self.alpha


class MultimodalSharedAttention(nn.Module):
    """One channel map from all modalities, applied to each: y_i = x_i * sigmoid(gamma * g + lambda * l) * alpha_i.

    Global part g: min, mean and max pooling of each modality, each pooling summed over modalities, every sum passed
    through one shared Linear(C -> C) + sigmoid, the three results summed. Local part l: a 1x1 sigmoid conv per
    modality, then min/mean/max pooled and summed over modalities and poolings.
    """

    def __init__(self, channels: int, num_modalities: int):
        super().__init__()
        self.num_modalities = num_modalities
        self.global_fc = nn.Linear(channels, channels)
        self.local_convs = nn.ModuleList(nn.Conv2d(channels, channels, 1) for _ in range(num_modalities))
        self.gamma = nn.Parameter(torch.ones(()))
        self.lam = nn.Parameter(torch.ones(()))
        self.alpha = nn.Parameter(torch.ones(num_modalities, channels))

    def shared_map(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The (B, C, 1, 1) map shared by every branch."""
        sums = [sum(parts) for parts in zip(*(_pool_min_mean_max(x) for x in xs))]
        g = sum(torch.sigmoid(self.global_fc(s)) for s in sums)
        l = sum(sum(_pool_min_mean_max(torch.sigmoid(conv(x)))) for conv, x in zip(self.local_convs, xs))
        return torch.sigmoid(self.gamma * g + self.lam * l)[:, :, None, None]

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(xs) != self.num_modalities:
            raise ValueError(f"MultimodalSharedAttention built for {self.num_modalities} modalities, got {len(xs)}")
        a = self.shared_map(xs)
        return [x * a * self.alpha[i][None, :, None, None] for i, x in enumerate(xs)]
