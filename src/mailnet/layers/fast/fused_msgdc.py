"""Inference-time fusion of "MSGDC then a linear 1x1 mix" into two convolutions.

Everything between the input and the mix's BN is linear: a grouped 1x1 conv (C -> F), depthwise 3x3 and 5x5 convs,
a concatenation, a channel shuffle (a fixed permutation) and a grouped 1x1 conv. Written out,

    mix(shuffle([G x | K3 * x | K5 * x])) = W_3 (K3 * x) + W_5 (K5 * x) + (W_G @ G) x

where W = the mix weight as a dense matrix with its columns put back in concatenation order (this absorbs the
shuffle) and W_G @ G composes two 1x1 convs into one. One depthwise conv with channel multiplier 3 produces, per
input channel, K3 * x (the 3x3 kernel zero-padded to 5x5), K5 * x and x itself (an identity tap, sampled at the
same stride as the 1x1 convs), so a single dense 1x1 conv on its output gives the whole mix, and also any other
1x1 conv on x at that stride stacked as extra output rows (EMILA's projection, ERLA's shortcut), with eval-mode BN
folded in. Two convolutions instead of 5-6 convolutions, a concatenation, a shuffle copy, 2-3 BNs and an add: more
multiply-adds, far fewer operator calls, which is what batch-1 latency on a CPU pays for.

Only for deterministic inference (plain convs, no random projection filters, no BN inside the MSGDC), and off by
default: the fused form does ~2-4x the multiply-adds. Measured at batch 1 on the shared 2-core machine it cut MAIL's
latency by ~30% with OpenMP's default (spinning) wait policy on an oversubscribed CPU, where every operator call
costs a scheduling slice, but it was ~30% *slower* than the unfused fast path with ``OMP_WAIT_POLICY=PASSIVE``
(the project's measurement setting), where multiply-adds dominate. So it is opt-in: ``fused_inference(True)``, or
``FUSE_MAX_BATCH`` >= the batch size. It is never used while a tracer records the model (ONNX export, fvcore's MAC
count), so cost tables count MAIL's own multiply-adds.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from mailnet.layers.channel_shuffle import channel_shuffle
from mailnet.layers.fast.bn_fold import fold_bn
from mailnet.layers.msgdc import MSGDC
from mailnet.utils import overridden


FUSE_MAX_BATCH = 0  # automatic use for batches up to this size; 0 = only when forced (see the module docstring)
_FORCE: list[bool | None] = [None]


def fusion_wanted(x: torch.Tensor) -> bool:
    """Whether to take the fused form for input ``x`` (see the module docstring; :func:`fused_inference`)."""
    if _FORCE[0] is not None:
        return _FORCE[0]
    return x.shape[0] <= FUSE_MAX_BATCH and not torch.jit.is_tracing()


@contextmanager
def fused_inference(enabled: bool | None) -> Iterator[None]:
    """Force the fused inference form on (True) or off (False) inside the block; None restores the automatic
    choice. Tests use it to check the fused form at any batch size; exporters may use it to trace it."""
    with overridden(_FORCE, enabled):
        yield


@dataclass
class FusedMSGDC:
    """The two convs of the fused form: one depthwise conv (channel multiplier 3: per input channel the 3x3 kernel
    zero-padded to 5x5, the 5x5 kernel, and an identity tap that passes x through at the conv's stride) and one
    dense 1x1 conv on its output, whose first ``rows`` outputs are the mix and the rest the stacked extra convs."""

    dw_weight: torch.Tensor  # (3C, 1, 5, 5), groups C
    weight: torch.Tensor  # (rows + sum(extra), 3C, 1, 1)
    bias: torch.Tensor | None
    stride: int
    channels: int
    splits: list[int]  # rows, then one entry per extra conv

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[mix output incl. folded bias, then each extra conv's output] (channel slices of one tensor)."""
        d = F.conv2d(x, self.dw_weight, None, self.stride, 2, 1, self.channels)
        y = F.conv2d(d, self.weight, self.bias)
        return list(y.split(self.splits, dim=1)) if len(self.splits) > 1 else [y]


def fusable(msgdc: MSGDC) -> bool:
    """Plain convs and no BN inside: the linear algebra above applies exactly."""
    plain = all(type(c) is nn.Conv2d for c in (msgdc.pointwise, msgdc.dw3, msgdc.dw5))
    no_bn = all(isinstance(b, nn.Identity) for b in (msgdc.bn_pointwise, msgdc.bn_dw3, msgdc.bn_dw5))
    return plain and no_bn


def dense_columns(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """A grouped 1x1 conv weight (out, in/groups, 1, 1) as the dense (out, in) matrix (block diagonal)."""
    out, per_in = weight.shape[0], weight.shape[1]
    blocks = weight.reshape(groups, out // groups, per_in)
    return torch.block_diag(*blocks.unbind(0))


def unshuffle_columns(w: torch.Tensor, groups: int) -> torch.Tensor:
    """Columns of a matrix applied to ``channel_shuffle(v, groups)`` reordered so it applies to ``v`` itself
    (one gather; differentiable, as the split mix needs it at every training step)."""
    return w.index_select(1, _unshuffle_index(w.shape[1], groups).to(w.device))


@lru_cache(maxsize=None)
def _unshuffle_index(n: int, groups: int) -> torch.Tensor:
    """``idx`` with ``channel_shuffle(v)[:, idx] == v``: the inverse of the shuffle's permutation of n channels."""
    src = channel_shuffle(torch.arange(n, dtype=torch.float64).view(1, n, 1, 1), groups).flatten().long()
    return torch.argsort(src)


def fuse(msgdc: MSGDC, mix: torch.Tensor, mix_bias: torch.Tensor | None = None,
         extras: list[tuple[torch.Tensor, torch.Tensor | None]] = ()) -> FusedMSGDC:
    """Fused form of ``mix @ MSGDC(x)`` (``mix`` a dense (R, F + 2C) matrix in concatenation order, ``mix_bias``
    its bias) plus ``extras``: (weight (E, C), bias) of other 1x1 convs on x at the same stride. Built in float64."""
    dt = msgdc.pointwise.weight.dtype
    c, f = msgdc.in_chans, msgdc.out_chans
    mix = mix.double()
    rows = mix.shape[0]
    g = dense_columns(msgdc.pointwise.weight.double(), msgdc.groups)  # (F, C)
    # columns per input channel c: [3x3 output, 5x5 output, x itself]
    blocks = [torch.stack([mix[:, f:f + c], mix[:, f + c:], mix[:, :f] @ g], dim=2)]
    biases = [mix_bias.double() if mix_bias is not None else torch.zeros(rows, dtype=torch.float64)]
    for w, b in extras:
        w = w.double()
        z = torch.zeros_like(w)
        blocks.append(torch.stack([z, z, w], dim=2))
        biases.append(b.double() if b is not None else torch.zeros(w.shape[0], dtype=torch.float64))
    weight = torch.cat(blocks).reshape(-1, 3 * c)
    bias = torch.cat(biases)
    k3 = F.pad(msgdc.dw3.weight.double(), (1, 1, 1, 1))  # (C, 1, 5, 5), zero ring
    ident = torch.zeros_like(k3)
    ident[:, :, 2, 2] = 1.0
    dw = torch.stack([k3, msgdc.dw5.weight.double(), ident], dim=1).reshape(3 * c, 1, 5, 5)
    has_bias = mix_bias is not None or any(b is not None for _, b in extras)
    return FusedMSGDC(
        dw_weight=dw.to(dt).contiguous(memory_format=torch.channels_last),
        weight=weight.to(dt)[..., None, None].contiguous(memory_format=torch.channels_last),
        bias=bias.to(dt) if has_bias else None,
        stride=msgdc.stride, channels=c, splits=[rows] + [w.shape[0] for w, _ in extras])


def fuse_emila(emila: nn.Module, shortcut: nn.Module | None = None) -> FusedMSGDC:
    """EMILA's ``mix_bn(mix(shuffle(msgdc(x))))`` and ``proj_bn(proj(x))`` in fused form (eval-mode BN), plus an
    ERLA projection shortcut ``Sequential(conv1x1, BN)`` on the same input and stride when given."""
    wm, bm = fold_bn(emila.mix.weight, emila.mix_bn)
    dense = unshuffle_columns(dense_columns(wm.double(), emila.mix.groups), emila.shuffle.groups)
    wp, bp = fold_bn(emila.proj.weight, emila.proj_bn)
    extras = [(wp.flatten(1), bp)]
    if shortcut is not None:
        ws, bs = fold_bn(shortcut[0].weight, shortcut[1])
        extras.append((ws.flatten(1), bs))
    return fuse(emila.msgdc, dense, bm, extras)


def fuse_projection(mop: nn.Module) -> FusedMSGDC:
    """EMCAM's ``project(msgdc(x))`` (no BN, no shuffle) in fused form."""
    return fuse(mop.msgdc, mop.project.weight.flatten(1))
