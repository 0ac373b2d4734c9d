"""Transfer attacks: adversarial images crafted on a *source* model, scored on the target.

A randomised defence can defeat gradient attacks without being robust (its gradients are noise, section 4 of the
design doc). A transfer attack needs no gradient from the target at all, so when it beats the white-box attack
("white-box <= transfer" fails) the white-box numbers are not to be trusted. Two sources are useful:

- the target itself with one draw of its randomness held fixed (:class:`FrozenDraw`): the same weights, a smooth
  deterministic function that plain PGD can follow, and the default;
- the target with every random variable at its expected value (:class:`ExpectedDraw`; ``--transfer-surrogate
  expectation``): also deterministic, and not tied to one draw, which matters when single draws differ so much
  that one says nothing about the next (the gradient-agreement probe says when);
- another trained model on the same data (e.g. plain MAIL for Robust-MAIL): ``mailnet attack --transfer-from``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from mailnet.errors import ConfigError
from mailnet.layers.noise import Stochastic, expected_draws, seed_noise

FROZEN_DRAW = "frozen draw of the target"  # SuiteSettings.transfer_source of the built-in surrogates
EXPECTED_DRAW = "the target at its random variables' expected values"
SURROGATES = {"frozen-draw": FROZEN_DRAW, "expectation": EXPECTED_DRAW}  # mailnet attack --transfer-surrogate


class FrozenDraw(nn.Module):
    """``model`` with the same seed installed before every forward pass, so every call sees the same draw of its
    randomness (RPF kernels, attention noise, MC-dropout masks for a given batch shape). The model's own generators
    are restored after each call, so scoring the target afterwards still uses fresh draws. A deterministic model
    passes through unchanged."""

    def __init__(self, model: nn.Module, seed: int = 0):
        super().__init__()
        self.model = model
        self.seed = int(seed)
        # found once: forward runs at every attack step
        self._noisy = [m for m in model.modules() if isinstance(m, Stochastic)]

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        noisy = self._noisy
        if not noisy:
            return self.model(xs)
        previous = [m.generator for m in noisy]
        seed_noise(self.model, self.seed, xs[0].device)
        try:
            return self.model(xs)
        finally:
            for m, g in zip(noisy, previous):
                m.generator = g


class ExpectedDraw(nn.Module):
    """``model`` with every random variable at its expected value at each forward pass
    (:func:`mailnet.layers.noise.expected_draws`): a deterministic surrogate with the target's weights."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        with expected_draws(self.model):
            return self.model(xs)


def check_compatible(source: nn.Module, target: nn.Module) -> None:
    """The source must take the target's inputs and answer its heads (same modalities and classes)."""
    for attr in ("in_chans", "num_classes"):
        a, b = getattr(source, attr, None), getattr(target, attr, None)
        if a is not None and b is not None and list(a) != list(b):
            raise ConfigError(f"transfer source has {attr}={list(a)} but the attacked model has {list(b)}; "
                              f"it must be trained on the same modalities and tasks")
