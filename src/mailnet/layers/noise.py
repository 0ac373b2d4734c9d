"""Seedable randomness for Robust-MAIL (and MC dropout): every random draw of a model goes through one
``torch.Generator`` that the caller can set or re-seed, so a draw can be *replayed* exactly.

How a draw is replayed (tests, attacks)::

    model.seed_noise(1234)      # or: seed_noise(model, 1234)
    y1 = model(xs)              # draw #1 of every random part (RPF kernels, attention noise, dropout masks)
    model.seed_noise(1234)
    y2 = model(xs)              # the very same draw again: y1 == y2 (same inputs, same batch shape)

Without re-seeding, consecutive forwards consume the generator and give fresh, independent draws (what EOT needs).
When no generator is set (``None``, the default), draws come from torch's global RNG (``torch.manual_seed``).
A generator on another device than the activations still works (the draw is made there and moved), but a
generator on the model's device is faster; :func:`seed_noise` creates one there.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
import torch.nn as nn


class Stochastic(nn.Module):
    """Base class of modules that draw random numbers; holds the (shared, optional) generator.

    ``expected``: use each random variable's expected value instead of a draw (:func:`expected_draws`); not saved.
    """

    def __init__(self) -> None:
        super().__init__()
        self.generator: torch.Generator | None = None
        self.expected = False

    def randn(self, shape: Sequence[int], ref: torch.Tensor) -> torch.Tensor:
        """Standard normal draw of ``shape`` with ``ref``'s device and dtype, from this module's generator."""
        return _draw(torch.randn, shape, ref, self.generator)

    def rand(self, shape: Sequence[int], ref: torch.Tensor) -> torch.Tensor:
        """Uniform [0, 1) draw of ``shape`` with ``ref``'s device and dtype, from this module's generator."""
        return _draw(torch.rand, shape, ref, self.generator)


def _draw(fn, shape: Sequence[int], ref: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    shape = tuple(int(s) for s in shape)
    if generator is None:
        return fn(shape, device=ref.device, dtype=ref.dtype)
    # draw in float32 on the generator's device: the replayed sequence then does not depend on ref's dtype.
    out = fn(shape, generator=generator, device=generator.device, dtype=torch.float32)
    return out.to(device=ref.device, dtype=ref.dtype)


def modulated_noise(n: torch.Tensor, weight: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Robust-MAIL's modulated attention noise ``w * (n + n^2)`` for a Gaussian draw ``n`` (spec sec. 3.2)."""
    return weight * (n + n * n)


class ModulatedNoise(Stochastic):
    """Adds modulated Gaussian noise and clips to [0, 1]: ``clip(x + w*(n + n^2), 0, 1)``, n ~ N(0, std^2).

    ``trainable=True`` makes ``w`` a learnable scalar (EMCAM), otherwise it is the fixed constant ``weight``
    (EMILA). Active in train *and* eval mode: Robust-MAIL's randomness is part of inference by design.
    ``scale`` multiplies ``std``; it is 1 except while a training warm-up ramps the noise in
    (:func:`set_noise_scale`), and it is not saved: a loaded model always draws the full noise.
    """

    def __init__(self, std: float = 0.6, weight: float = 1.0, trainable: bool = False):
        super().__init__()
        self.std = float(std)
        self.scale = 1.0
        if trainable:
            self.weight = nn.Parameter(torch.tensor(float(weight)))
        else:
            self.register_buffer("weight", torch.tensor(float(weight)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sigma = self.std * self.scale
        if self.expected:  # E[w * (n + n^2)] = w * sigma^2 (the noise's mean, clipped with x as a draw would be)
            return torch.clamp(x + self.weight * sigma * sigma, 0.0, 1.0)
        n = self.randn(x.shape, x) * sigma
        return torch.clamp(x + modulated_noise(n, self.weight), 0.0, 1.0)

    def extra_repr(self) -> str:
        return f"std={self.std}, trainable={isinstance(self.weight, nn.Parameter)}"


def set_noise_scale(module: nn.Module, scale: float) -> int:
    """Scale the std of every :class:`ModulatedNoise` in ``module`` by ``scale`` (1 = the model as specified).

    Why: Robust-MAIL's attention noise dominates its early gradients (see BENCHMARKS.md), so training can ramp it
    in from 0 (``train.noise_warmup``). Returns how many noise modules were set (0: the model has none).
    """
    if not 0.0 <= scale <= 1.0:
        raise ValueError(f"noise scale must be in [0, 1], got {scale}")
    count = 0
    for m in module.modules():
        if isinstance(m, ModulatedNoise):
            m.scale = float(scale)
            count += 1
    return count


class Dropout(Stochastic):
    """Inverted dropout that draws its mask from the module generator.

    ``mc=False``: ordinary dropout (active only in training mode). ``mc=True``: Monte-Carlo dropout, active in
    eval mode too (Robust-MAIL, DRIFA). Element-wise masks, like ``nn.Dropout``.
    """

    def __init__(self, p: float = 0.25, mc: bool = False):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)
        self.mc = bool(mc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not (self.training or self.mc) or self.expected:  # inverted: E[mask] / (1 - p) = 1
            return x
        keep = (self.rand(x.shape, x) >= self.p).to(x.dtype)
        return x * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}, mc={self.mc}"


def set_noise_generator(module: nn.Module, generator: torch.Generator | None) -> None:
    """Point every :class:`Stochastic` sub-module of ``module`` at ``generator`` (``None``: torch's global RNG)."""
    for m in module.modules():
        if isinstance(m, Stochastic):
            m.generator = generator


@contextlib.contextmanager
def expected_draws(module: nn.Module) -> Iterator[nn.Module]:
    """Inside: every random part of ``module`` uses its random variable's expected value instead of a draw (random
    projection kernels 0, dropout masks their mean, attention noise ``w * sigma^2``), so the model is deterministic.

    Why: a surrogate of a random defence for a transfer attack when its single-draw gradients are too noisy for
    EOT (the expectation of each variable, not the expected output: the network is nonlinear, so the two differ)."""
    parts = [m for m in module.modules() if isinstance(m, Stochastic)]
    before = [m.expected for m in parts]
    for m in parts:
        m.expected = True
    try:
        yield module
    finally:
        for m, flag in zip(parts, before):
            m.expected = flag


def seed_noise(module: nn.Module, seed: int, device: torch.device | str | None = None) -> torch.Generator:
    """Give ``module`` a fresh generator seeded with ``seed`` (on ``device``, default: the module's parameters'
    device) and return it. Calling it again with the same seed replays the same sequence of draws."""
    if device is None:
        p = next(iter(module.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    set_noise_generator(module, g)
    return g


def is_stochastic_at_eval(module: nn.Module) -> bool:
    """True when some part of ``module`` still draws random numbers in eval mode."""
    for m in module.modules():
        if isinstance(m, Dropout):
            if m.mc and m.p > 0:
                return True
        elif isinstance(m, Stochastic) and getattr(m, "active", True):
            return True
    return False
