"""Seeding the randomness a model keeps at inference (MC dropout, Robust-MAIL's noise and random filters), so
that one draw can be replayed and runs resume exactly."""
from __future__ import annotations

import torch
import torch.nn as nn


def reseed(model: nn.Module, seed: int) -> None:
    """Seed torch's global generator (dropout) and every module that owns a noise generator (``seed_noise``)."""
    torch.manual_seed(seed)
    for m in model.modules():
        fn = getattr(m, "seed_noise", None)
        if callable(fn):
            fn(seed)
            break  # the top-level owner seeds its children


@torch.no_grad()
def is_stochastic(model: nn.Module, images: list[torch.Tensor]) -> bool:
    """Whether two eval-mode forwards on the same input differ (decided by trying, so no model must declare it)."""
    was_training = model.training
    model.eval()
    a = model(images)
    b = model(images)
    model.train(was_training)
    return any(not torch.equal(x, y) for x, y in zip(a, b))
