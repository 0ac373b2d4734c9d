"""Inference-time fusion of "MSGDC then a linear 1x1 mix" into three convolutions.

Everything between the input and the mix's BN is linear: a grouped 1x1 conv (C -> F), depthwise 3x3 and 5x5 convs,
a concatenation, a channel shuffle (a fixed permutation) and a grouped 1x1 conv. Written out,

    mix(shuffle([G x | K3 * x | K5 * x])) = (W_G @ G) x + W_35 (K35 * x)

where W = the mix weight as a dense matrix with its columns put back in concatenation order (this absorbs the
shuffle), W_G @ G is one dense 1x1 conv composed from two, and K35 is a single depthwise conv with channel
multiplier 2 whose outputs interleave the 3x3 kernel (zero-padded to 5x5) and the 5x5 kernel of each channel.
Any other 1x1 conv on the same input at the same stride (EMILA's projection) is stacked onto W_G @ G's rows, and BN
(eval mode) is folded into both. That is 3 convolutions and one add instead of 5-6 convolutions, a concatenation,
a shuffle copy and 2 BNs: more multiply-adds in the 1x1 convs but far fewer operator calls, which is what
batch-1 latency on a CPU pays for.

Only for deterministic inference: plain convs (no random projection filters) and no BN inside the MSGDC.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from mailnet.layers.channel_shuffle import channel_shuffle
from mailnet.layers.fast.bn_fold import fold_bn
from mailnet.layers.msgdc import MSGDC


@dataclass
class FusedMSGDC:
    """The three convs of the fused form; ``rows`` output channels of the mix, then any stacked extra rows."""

    x_weight: torch.Tensor  # (rows + extra, C, 1, 1)
    x_bias: torch.Tensor | None
    dw_weight: torch.Tensor  # (2C, 1, 5, 5), groups C
    d_weight: torch.Tensor  # (rows, 2C, 1, 1)
    stride: int
    channels: int
    rows: int

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mix output incl. folded bias, the stacked extra rows or None)."""
        y = F.conv2d(x, self.x_weight, self.x_bias, self.stride)
        d = F.conv2d(x, self.dw_weight, None, self.stride, 2, 1, self.channels)
        u = F.conv2d(d, self.d_weight).add_(y[:, :self.rows])
        return u, (y[:, self.rows:] if y.shape[1] > self.rows else None)


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
    """Columns of a matrix applied to ``channel_shuffle(v, groups)`` reordered so it applies to ``v`` itself."""
    n = w.shape[1]
    src = channel_shuffle(torch.arange(n, dtype=torch.float64).view(1, n, 1, 1), groups).flatten().long()
    out = torch.zeros_like(w)
    out[:, src] = w
    return out


def fuse(msgdc: MSGDC, mix: torch.Tensor, mix_bias: torch.Tensor | None = None,
         extra: torch.Tensor | None = None, extra_bias: torch.Tensor | None = None) -> FusedMSGDC:
    """Fused form of ``mix @ MSGDC(x)`` (``mix`` a dense (R, F + 2C) matrix in concatenation order, ``mix_bias``
    its bias) with optional ``extra`` (E, C) rows of another 1x1 conv on x at the same stride. Built in float64."""
    dt = msgdc.pointwise.weight.dtype
    c, f = msgdc.in_chans, msgdc.out_chans
    mix = mix.double()
    g = dense_columns(msgdc.pointwise.weight.double(), msgdc.groups)  # (F, C)
    xw = mix[:, :f] @ g
    rows = xw.shape[0]
    xb = mix_bias.double() if mix_bias is not None else None
    if extra is not None:
        xw = torch.cat([xw, extra.double()])
        eb = extra_bias.double() if extra_bias is not None else torch.zeros(extra.shape[0], dtype=torch.float64)
        xb = torch.cat([xb if xb is not None else torch.zeros(rows, dtype=torch.float64), eb])
    k3 = F.pad(msgdc.dw3.weight.double(), (1, 1, 1, 1))  # (C, 1, 5, 5), zero ring
    dw = torch.stack([k3, msgdc.dw5.weight.double()], dim=1).reshape(2 * c, 1, 5, 5)
    dcols = torch.stack([mix[:, f:f + c], mix[:, f + c:]], dim=2).reshape(rows, 2 * c)
    return FusedMSGDC(
        x_weight=xw.to(dt)[..., None, None].contiguous(memory_format=torch.channels_last),
        x_bias=xb.to(dt) if xb is not None else None,
        dw_weight=dw.to(dt).contiguous(memory_format=torch.channels_last),
        d_weight=dcols.to(dt)[..., None, None].contiguous(memory_format=torch.channels_last),
        stride=msgdc.stride, channels=c, rows=rows)


def fuse_emila(emila: nn.Module) -> FusedMSGDC:
    """EMILA's ``mix_bn(mix(shuffle(msgdc(x))))`` and ``proj_bn(proj(x))`` in fused form (eval-mode BN)."""
    wm, bm = fold_bn(emila.mix.weight, emila.mix_bn)
    dense = unshuffle_columns(dense_columns(wm.double(), emila.mix.groups), emila.shuffle.groups)
    wp, bp = fold_bn(emila.proj.weight, emila.proj_bn)
    return fuse(emila.msgdc, dense, bm, wp.flatten(1), bp)


def fuse_projection(mop: nn.Module) -> FusedMSGDC:
    """EMCAM's ``project(msgdc(x))`` (no BN, no shuffle) in fused form."""
    return fuse(mop.msgdc, mop.project.weight.flatten(1))
