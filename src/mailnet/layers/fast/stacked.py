"""The modality streams of MAIL's backbone run as one: every ERLA block of stage s, block b, of all M branches
computed by the same operator calls on the channel-concatenated activations ``[stream 1 | ... | stream M]``.

Why: at batch 1 much of MAIL's time is the fixed cost of its ~1,500 operator calls, not their arithmetic (halving
the calls at equal multiply-adds made batch-1 inference 1.3-1.7x faster on the CPU; BENCHMARKS.md, Speed). The branches
have identical layer shapes, so each per-stream call can become one call with M times the groups and the per-stream
weights concatenated: a grouped conv stays grouped (groups x M), a dense 1x1 conv becomes M groups, BatchNorm and
element-wise operators are per channel anyway, and the attention MLPs become one batched matrix product. The
multiply-adds are exactly the same; the calls are M times fewer.

Only for the deterministic blocks (plain convs, no BN inside the MSGDC, no attention noise) in eval mode with no
gradient reaching the parameters (:func:`mailnet.layers.fast.bn_fold.use_folded`). Used by default where it was
measured to help: inference without autograd at small batches, on the CPU (batch 1 on 2 threads: 1.3-1.5x faster)
and on a CUDA GPU (batch 1 on an H200: 32 -> 17 ms at 28 px, 31 -> 18 ms at 128 px, where MAIL's time is launch
overhead). At batch 64 it made inference and an attack step (input gradient) slower on the CPU, and larger GPU
batches were not timed, so elsewhere it is off unless forced (:func:`stacked_streams`). The stacked weights (BatchNorm
folded in, float64 then cast) are cached and rebuilt whenever a source tensor changes, like every other fold.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mailnet.layers.channel_shuffle import effective_groups
from mailnet.layers.fast.bn_fold import bn_sources, fold_bn
from mailnet.layers.fast.ops import SMALL_BATCH, pointwise_matmul, to_channels_last
from mailnet.utils import overridden


_FORCE: list[bool | None] = [None]


def stacking_wanted(x: torch.Tensor) -> bool:
    """Whether the streams should run stacked for activations like ``x`` (see the module docstring)."""
    if _FORCE[0] is not None:
        return _FORCE[0]
    return x.device.type in ("cpu", "cuda") and x.shape[0] < SMALL_BATCH and not torch.is_grad_enabled()


@contextmanager
def stacked_streams(enabled: bool | None) -> Iterator[None]:
    """Force stacking on (True) or off (False) inside the block, wherever the blocks allow it; None restores the
    automatic choice. Tests use it at any batch size and with input gradients; benchmarks use it to compare."""
    with overridden(_FORCE, enabled):
        yield


def stackable(block: nn.Module) -> bool:
    """An ERLA block whose inference is deterministic and linear where the stacking needs it."""
    for e in (block.emila1, block.emila2):
        m = e.msgdc
        if e.attention_noise or not all(type(c) is nn.Conv2d for c in (m.pointwise, m.dw3, m.dw5, e.mix, e.proj)):
            return False
        if not all(isinstance(b, nn.Identity) for b in (m.bn_pointwise, m.bn_dw3, m.bn_dw5)):
            return False
        if not all(b.track_running_stats and b.running_mean is not None for b in (e.mix_bn, e.proj_bn)):
            return False
    convs_ok = type(block.conv) is nn.Conv2d and block.bn1.running_mean is not None
    shortcut_ok = isinstance(block.shortcut, nn.Identity) or (
        type(block.shortcut[0]) is nn.Conv2d and block.shortcut[1].running_mean is not None)
    return convs_ok and shortcut_ok


def block_sources(block: nn.Module) -> list[torch.Tensor | None]:
    """Every tensor the stacked weights of ``block`` are built from (the cache's staleness check)."""
    out: list[torch.Tensor | None] = []
    for e in (block.emila1, block.emila2):
        m, mlp = e.msgdc, e.attention.mlp
        out += [m.pointwise.weight, m.dw3.weight, m.dw5.weight, e.mix.weight, *bn_sources(e.mix_bn), e.proj.weight,
                *bn_sources(e.proj_bn), mlp[0].weight, mlp[0].bias, mlp[2].weight, mlp[2].bias, e.attention.scale]
    out += [*bn_sources(block.bn1), block.conv.weight, *bn_sources(block.bn2)]
    if not isinstance(block.shortcut, nn.Identity):
        out += [block.shortcut[0].weight, *bn_sources(block.shortcut[1])]
    return out


def _conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, padding: int,
          groups: int) -> torch.Tensor:
    """``F.conv2d``, with the fast path's rule for small CPU batches: an unpadded 1x1 conv as one batched matmul
    (torch's im2col fallback would run a grouped conv as one call per group)."""
    if x.device.type == "cpu" and x.shape[0] < SMALL_BATCH and weight.shape[-2:] == (1, 1) and padding == 0:
        return pointwise_matmul(x, weight, bias, (stride, stride), groups)
    return F.conv2d(x, weight, bias, stride, padding, 1, groups)


def _cat_folded(convs: Sequence[nn.Conv2d], bns: Sequence[nn.BatchNorm2d]) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [fold_bn(c.weight, b, c.bias) for c, b in zip(convs, bns)]
    return torch.cat([w for w, _ in pairs]), torch.cat([b for _, b in pairs])


@dataclass
class StackedEMILA:
    """One EMILA unit of M streams: the stacked conv weights (BN folded) and attention parameters."""

    streams: int
    in_chans: int
    out_chans: int
    stride: int
    pw_groups: int  # per stream
    shuffle_groups: int  # per stream, on the F + 2C concatenation
    mix_groups: int  # per stream
    pw: torch.Tensor
    dw3: torch.Tensor
    dw5: torch.Tensor
    mix_w: torch.Tensor
    mix_b: torch.Tensor
    proj_w: torch.Tensor
    proj_b: torch.Tensor
    mlp1_w: torch.Tensor  # (M, F, hidden): x @ w
    mlp1_b: torch.Tensor  # (M, 1, hidden)
    mlp2_w: torch.Tensor  # (M, hidden, F)
    mlp2_b: torch.Tensor  # (M, 1, F)
    scale: torch.Tensor  # (M, 1)

    @classmethod
    def build(cls, units: Sequence[nn.Module]) -> "StackedEMILA":
        e0 = units[0]
        m0 = e0.msgdc
        mix_w, mix_b = _cat_folded([e.mix for e in units], [e.mix_bn for e in units])
        proj_w, proj_b = _cat_folded([e.proj for e in units], [e.proj_bn for e in units])
        mlps = [e.attention.mlp for e in units]
        return cls(
            streams=len(units), in_chans=m0.in_chans, out_chans=m0.out_chans, stride=m0.stride,
            pw_groups=m0.groups, shuffle_groups=effective_groups(m0.out_channels, e0.shuffle.groups),
            mix_groups=e0.mix.groups,
            pw=torch.cat([e.msgdc.pointwise.weight for e in units]),
            dw3=torch.cat([e.msgdc.dw3.weight for e in units]),
            dw5=torch.cat([e.msgdc.dw5.weight for e in units]),
            mix_w=mix_w, mix_b=mix_b, proj_w=proj_w, proj_b=proj_b,
            mlp1_w=torch.stack([m[0].weight.t() for m in mlps]), mlp1_b=torch.stack([m[0].bias for m in mlps])[:, None],
            mlp2_w=torch.stack([m[2].weight.t() for m in mlps]), mlp2_b=torch.stack([m[2].bias for m in mlps])[:, None],
            scale=torch.stack([e.attention.scale for e in units]).reshape(-1, 1))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, c, f, s = self.streams, self.in_chans, self.out_chans, self.stride
        b = x.shape[0]
        pw = _conv(x, self.pw, None, s, 0, n * self.pw_groups)
        d3 = F.conv2d(x, self.dw3, None, s, 1, 1, n * c)
        d5 = F.conv2d(x, self.dw5, None, s, 2, 1, n * c)
        h, w = pw.shape[-2:]
        # per stream [pw | dw3 | dw5], then the per-stream channel shuffle, in one NHWC copy
        v = torch.cat([t.permute(0, 2, 3, 1).reshape(b, h, w, n, -1) for t in (pw, d3, d5)], dim=-1)
        g = self.shuffle_groups
        v = v.reshape(b, h, w, n, g, -1).transpose(-1, -2).reshape(b, h, w, -1).permute(0, 3, 1, 2)
        u = _conv(v, self.mix_w, self.mix_b, 1, 0, n * self.mix_groups)
        p = _conv(x, self.proj_w, self.proj_b, s, 0, n)
        # channel attention: descriptor 2*max + sum (see fast_emila.attention_logits), one MLP per stream
        d = (2 * u.amax(dim=(2, 3)) + u.sum(dim=(2, 3))).reshape(b, n, f).transpose(0, 1)  # (M, B, F)
        hidden = torch.baddbmm(self.mlp1_b, d, self.mlp1_w).relu_()
        z = torch.baddbmm(self.mlp2_b, hidden, self.mlp2_w)  # (M, B, F)
        a = torch.sigmoid(self.scale[:, :, None] * z).transpose(0, 1).reshape(b, n * f, 1, 1)
        return torch.addcmul(p, u, a).relu_()


@dataclass
class StackedERLA:
    """One ERLA block of M streams (see the module docstring)."""

    emila1: StackedEMILA
    emila2: StackedEMILA
    bn1_scale: torch.Tensor  # (1, M*F, 1, 1)
    bn1_shift: torch.Tensor
    conv_w: torch.Tensor
    conv_b: torch.Tensor
    shortcut_w: torch.Tensor | None
    shortcut_b: torch.Tensor | None

    @classmethod
    def build(cls, blocks: Sequence[nn.Module]) -> "StackedERLA":
        # bn1 follows a ReLU, so it stays an affine map: the fold of a unit weight is its (scale, shift)
        affine = [fold_bn(torch.ones_like(b.bn1.running_var), b.bn1) for b in blocks]
        conv_w, conv_b = _cat_folded([b.conv for b in blocks], [b.bn2 for b in blocks])
        sw = sb = None
        if not isinstance(blocks[0].shortcut, nn.Identity):
            sw, sb = _cat_folded([b.shortcut[0] for b in blocks], [b.shortcut[1] for b in blocks])
        return cls(emila1=StackedEMILA.build([b.emila1 for b in blocks]),
                   emila2=StackedEMILA.build([b.emila2 for b in blocks]),
                   bn1_scale=torch.cat([w for w, _ in affine])[None, :, None, None],
                   bn1_shift=torch.cat([t for _, t in affine])[None, :, None, None],
                   conv_w=conv_w, conv_b=conv_b, shortcut_w=sw, shortcut_b=sb)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n = self.emila1.streams
        h = torch.addcmul(self.bn1_shift, self.emila1(x), self.bn1_scale).relu_()
        h = self.emila2(h)
        h = _conv(h, self.conv_w, self.conv_b, 1, 0, n)
        sc = x if self.shortcut_w is None else _conv(x, self.shortcut_w, self.shortcut_b, self.emila1.stride, 0, n)
        return to_channels_last(torch.add(h, sc).relu_())
