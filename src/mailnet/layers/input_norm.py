"""Per-channel input normalisation inside the model, so that attacks and users work in [0, 1] pixel space."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn


class InputNorm(nn.Module):
    """(x - mean) / std with fixed per-channel buffers (default 0.5 / 0.5, i.e. [0, 1] -> [-1, 1])."""

    def __init__(self, in_chans: int, mean: Sequence[float] | float = 0.5, std: Sequence[float] | float = 0.5):
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
        if mean_t.numel() == 1:
            mean_t = mean_t.expand(in_chans)
        if std_t.numel() == 1:
            std_t = std_t.expand(in_chans)
        if mean_t.numel() != in_chans or std_t.numel() != in_chans:
            raise ValueError(f"InputNorm: mean/std need 1 or {in_chans} values")
        self.register_buffer("mean", mean_t.reshape(1, in_chans, 1, 1).clone(), persistent=False)
        self.register_buffer("std", std_t.reshape(1, in_chans, 1, 1).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
