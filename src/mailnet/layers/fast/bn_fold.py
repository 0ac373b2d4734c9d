"""BatchNorm folded into the preceding convolution for inference: BN(conv(x)) == conv'(x) + b' in eval mode.

Folded weights are cached per module and rebuilt whenever a parameter or running statistic changes (tracked by the
tensors' version counters), so loading a checkpoint or training a step never leaves a stale fold behind. Fused
optimizers (``torch.optim.Adam(..., fused=True)``) update parameters without bumping version counters, so the
caches are also dropped whenever the mode changes between train and eval (:class:`FoldCacheOwner`). Folding is
only used when no gradient is wanted (``use_folded``): attacks that need gradients in eval mode, and training,
take the unfolded path, whose autograd graph reaches every BN parameter.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn


def use_folded(module: nn.Module) -> bool:
    """Folding applies in eval mode when no gradient has to reach the module's parameters: autograd off
    (``torch.no_grad`` / ``torch.inference_mode``), or every parameter frozen, as in an attack, which needs only
    input gradients (:func:`mailnet.attacks.eot.attack_mode`); the folded weights are then constants and the input
    gradient flows through the same function (MAIL's CPU attack step 3.77 -> 3.30 s, BENCHMARKS.md)."""
    if module.training:
        return False
    return not torch.is_grad_enabled() or not any(p.requires_grad for p in module.parameters())


def fold_bn(weight: torch.Tensor, bn: nn.BatchNorm2d,
            bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(w', b') with ``conv(x, w') + b' == bn(conv(x, weight) + bias)`` for ``bn`` in eval mode.

    Computed in float64 and cast back, so the fold adds no rounding error of its own beyond the final cast.
    """
    var = bn.running_var.double()
    mean = bn.running_mean.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)
    w = weight.double() * scale.view(-1, *([1] * (weight.dim() - 1)))
    b0 = bias.double() if bias is not None else torch.zeros_like(var)
    b = beta + (b0 - mean) * scale
    return w.to(weight.dtype), b.to(weight.dtype)


def _stamp(tensors: list[torch.Tensor | None]) -> tuple:
    return tuple((id(t), t._version, t.device, t.dtype) if t is not None else None for t in tensors)


class FoldCache:
    """Memoises derived inference tensors (folded weights, composed matrices) until their sources change.

    ``get(key, sources, build)`` returns ``build()``'s result, rebuilt when any tensor in ``sources`` was modified
    in place, replaced, or moved since the last call. Built outside autograd and outside inference mode, so the
    cached tensors are ordinary constants usable under ``no_grad`` as well as ``inference_mode``.
    """

    def __init__(self) -> None:
        self._store: dict[str, tuple[tuple, object]] = {}

    def get(self, key: str, sources: list[torch.Tensor | None], build: Callable[[], object]) -> object:
        stamp = _stamp(sources)
        hit = self._store.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        with torch.inference_mode(False), torch.no_grad():
            value = build()
        self._store[key] = (stamp, value)
        return value

    def clear(self) -> None:
        self._store.clear()


def bn_foldable(bn: nn.Module) -> bool:
    """A BatchNorm2d with running statistics: the only kind whose eval-mode output is a fixed affine map."""
    return isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats and bn.running_mean is not None


def bn_sources(bn: nn.Module) -> list[torch.Tensor | None]:
    """The tensors a BN fold depends on."""
    return [bn.weight, bn.bias, bn.running_mean, bn.running_var]


class FoldCacheOwner:
    """Mixin for the fast blocks: a switch between train and eval mode drops the module's fold cache.

    Why: version counters miss in-place updates made by fused optimizer kernels; every training phase runs in train
    mode, so dropping the cache when the mode changes makes the next eval pass rebuild it from the current weights.
    Calling ``eval()`` on a model already in eval mode (as many loops do before every batch) keeps the cache."""

    def train(self, mode: bool = True):
        if self.training != bool(mode):
            self.__dict__.pop("_fold_cache", None)
        return super().train(mode)


def cache_of(module: nn.Module) -> FoldCache:
    """The module's fold cache, created on first use (kept out of ``state_dict`` and ``_modules``)."""
    cache = module.__dict__.get("_fold_cache")
    if cache is None:
        cache = FoldCache()
        module.__dict__["_fold_cache"] = cache
    return cache


def folded_conv_bn(module: nn.Module, key: str, conv: nn.Conv2d,
                   bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Cached (w', b') of ``bn(conv(.))``; ``conv`` must be a plain ``nn.Conv2d``."""
    return cache_of(module).get(key, [conv.weight, conv.bias, *bn_sources(bn)],
                                lambda: fold_bn(conv.weight, bn, conv.bias))
