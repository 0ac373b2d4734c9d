"""Fast EMILA: channels-last end to end, the narrow units' mix without concatenation and shuffle (split form), the
channel shuffle otherwise kept in NHWC, the attention descriptor from two reductions instead of four, BN folded into
the 1x1 convs at inference, and the residual sum fused."""
from __future__ import annotations

import torch

from mailnet.layers.channel_attention import ChannelAttention
from mailnet.layers.emila import EMILA
from mailnet.layers.fast.bn_fold import FoldCacheOwner, bn_sources, cache_of, use_folded
from mailnet.layers.fast.fused_msgdc import fusable, fuse_emila, fusion_wanted
from mailnet.layers.fast.ops import conv_bn, shuffle_channels_last, spatial_max_plus
from mailnet.layers.fast.split_mix import split_mix, split_mix_wanted


def attention_logits(att: ChannelAttention, u: torch.Tensor) -> torch.Tensor:
    """``att.logits(u)`` with the descriptor written as what it equals: (min + mean + max + sum) +
    (max - mean - min) = 2*max + sum. Min and mean cancel exactly, also in the gradient (+g - g = 0), so only
    two reductions are needed."""
    mx, total = spatial_max_plus(u, "sum")
    return att.mlp(2 * mx + total)[..., None, None]


class FastEMILA(FoldCacheOwner, EMILA):
    """:class:`EMILA` with the same parameters and the same random draws (Robust-MAIL's noise modules and
    random projection filters are called in the reference's order)."""

    def fusion_sources(self) -> list:
        m = self.msgdc
        return [m.pointwise.weight, m.dw3.weight, m.dw5.weight, self.mix.weight, *bn_sources(self.mix_bn),
                self.proj.weight, *bn_sources(self.proj_bn)]

    def _fused(self):
        """The cached inference-time fused convs (see :mod:`mailnet.layers.fast.fused_msgdc`)."""
        return cache_of(self).get("fused", self.fusion_sources(), lambda: fuse_emila(self))

    def can_fuse(self) -> bool:
        """Inference (eval, no grad) with plain convs: the fused two-conv form applies."""
        return use_folded(self) and fusable(self.msgdc) and all(
            bn.track_running_stats and bn.running_mean is not None for bn in (self.mix_bn, self.proj_bn))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.can_fuse() and fusion_wanted(x):
            u, p = self._fused()(x)
            return self.attend(u, p)
        if split_mix_wanted(self, x):
            u = split_mix(self, x)
        else:
            v = shuffle_channels_last(self.msgdc(x), self.shuffle.groups)
            u = conv_bn(self, "mix", self.mix, self.mix_bn, v)
        p = conv_bn(self, "proj", self.proj, self.proj_bn, x)
        return self.attend(u, p)

    def attend(self, u: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """Channel attention and the output: ReLU(p + u * a), or Robust-MAIL's noisy form."""
        z = attention_logits(self.attention, u)
        if self.attention_noise:
            z = self.logit_noise(z)
        a = self.attention.gate(z)
        r = torch.addcmul(p, u, a).relu_()
        if not self.attention_noise:
            return r
        s = self.output_noise(r)
        return u * (s * a) ** 3
