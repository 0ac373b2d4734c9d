"""Per-channel input normalisation inside the model, so that attacks and users work in [0, 1] pixel space."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from mailnet.errors import ModelError


class InputNorm(nn.Module):
    """(x - mean) / std with fixed per-channel buffers (default 0.5 / 0.5, i.e. [0, 1] -> [-1, 1]).

    A float64 input is cast to the buffers' dtype (the model's, after ``model.to(dtype)``) first: numpy arrays come
    as float64, and without the cast the first conv fails with "expected scalar type Double". ``label`` prefixes
    ``mean`` / ``std`` in the one-line ``ModelError`` for bad constants, so that it names the model's argument.
    """

    def __init__(self, in_chans: int, mean: Sequence[float] | float = 0.5, std: Sequence[float] | float = 0.5,
                 label: str = "InputNorm: "):
        super().__init__()
        mean_t = _per_channel(mean, in_chans, "mean", label)
        std_t = _per_channel(std, in_chans, "std", label)
        if not bool((std_t > 0).all()):  # construction time only: never in forward
            raise ModelError(f"{label}std must be > 0 (inputs are divided by it), got {std!r}")
        self.register_buffer("mean", mean_t.reshape(1, in_chans, 1, 1).clone(), persistent=False)
        self.register_buffer("std", std_t.reshape(1, in_chans, 1, 1).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float64 and self.mean.dtype != torch.float64:
            x = x.to(self.mean.dtype)
        return (x - self.mean) / self.std


def _per_channel(values: Sequence[float] | float, in_chans: int, what: str, label: str) -> torch.Tensor:
    """``values`` as ``in_chans`` finite floats (one value is repeated for every channel)."""
    try:
        t = torch.as_tensor(values, dtype=torch.float32).flatten()
    except (TypeError, ValueError, RuntimeError):
        raise ModelError(f"{label}{what} must be a number or a list of numbers, got {values!r}") from None
    if t.numel() == 1:
        t = t.expand(in_chans)
    if t.numel() != in_chans:
        one_per = "" if in_chans == 1 else f" or {in_chans} (one per channel)"
        raise ModelError(f"{label}{what} has {t.numel()} values for {in_chans} channel(s); give 1 value{one_per}")
    if not bool(torch.isfinite(t).all()):
        raise ModelError(f"{label}{what} must be finite, got {values!r}")
    return t
