"""Adapters so models outside the registry convention can be attacked with the same code."""
from __future__ import annotations

import torch
import torch.nn as nn


class SingleInput(nn.Module):
    """A torchvision-style ``model(x) -> logits`` seen as ``model([x]) -> [logits]`` (one modality, one task)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.model(xs[0])]
