"""Fast MSGDC and EMCAM's MSGDC projection ("Mop"): channels-last convs, BN folded at inference, and Mop on a
globally pooled (B, C, 1, 1) descriptor computed as one C x C matrix product instead of four 1x1-pixel convs."""
from __future__ import annotations

import torch
import torch.nn as nn

from mailnet.layers.fast.bn_fold import FoldCacheOwner, cache_of, use_folded
from mailnet.layers.fast.fused_msgdc import dense_columns, fusable, fuse_projection, fusion_wanted
from mailnet.layers.fast.ops import conv_bn, dense_grad
from mailnet.layers.msgdc import MSGDC, MSGDCProjection


class FastMSGDC(FoldCacheOwner, MSGDC):
    """:class:`MSGDC` with the same parameters; output identical up to float rounding. Random projection
    filters (Robust-MAIL) keep working: those convs are called exactly as the reference calls them, in the same
    order, so a seeded draw replays identically. A branch ending in a BN (Robust-MAIL) gets its gradient as a
    dense tensor (:func:`dense_grad`; Robust-MAIL trains 1.37x faster, BENCHMARKS.md); without BN it changes nothing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.branches(x), dim=1)

    def branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[grouped 1x1, dw3, dw5] outputs, computed in the reference's order (a seeded RPF draw replays)."""
        return [self.branch("pointwise", self.pointwise, self.bn_pointwise, x),
                self.branch("dw3", self.dw3, self.bn_dw3, x),
                self.branch("dw5", self.dw5, self.bn_dw5, x)]

    def pointwise_is_linear(self) -> bool:
        """The grouped 1x1 branch is a plain conv with no BN after it (MAIL), so a 1x1 conv applied to its output
        can be composed with it into one 1x1 conv on x."""
        return type(self.pointwise) is nn.Conv2d and isinstance(self.bn_pointwise, nn.Identity)

    def branch(self, key: str, conv: nn.Module, bn: nn.Module, x: torch.Tensor) -> torch.Tensor:
        y = conv_bn(self, key, conv, bn, x)
        return y if isinstance(bn, nn.Identity) else dense_grad(y)


class FastMSGDCProjection(FoldCacheOwner, MSGDCProjection):
    """:class:`MSGDCProjection` with a matrix form for 1 x 1 inputs.

    On a (B, C, 1, 1) input the 3x3 and 5x5 'same' depthwise convs only ever touch their centre tap, so
    ``Mop(s) = M @ s`` with ``M = P_1 @ blockdiag(G) + P_2 @ diag(k3) + P_3 @ diag(k5)`` (P the projection's three
    column blocks, G the grouped 1x1 weight, k3/k5 the centre taps): one small matrix instead of four convs
    on 1-pixel images.
    """

    def matrix(self) -> torch.Tensor:
        """M (C, C), differentiable in the parameters (cached at inference)."""
        if use_folded(self):
            m = self.msgdc
            return cache_of(self).get("matrix", [self.project.weight, m.pointwise.weight, m.dw3.weight,
                                                 m.dw5.weight], self._build_matrix)
        return self._build_matrix()

    def _build_matrix(self) -> torch.Tensor:
        m = self.msgdc
        c = m.in_chans
        p = self.project.weight.flatten(1)  # (C, F + 2C)
        g = dense_columns(m.pointwise.weight, m.groups)  # (F, C)
        k3 = m.dw3.weight[:, 0, 1, 1]
        k5 = m.dw5.weight[:, 0, 2, 2]
        f = m.out_chans
        return p[:, :f] @ g + p[:, f:f + c] * k3 + p[:, f + c:] * k5

    def on_vectors(self, s: torch.Tensor) -> torch.Tensor:
        """Mop applied to descriptors ``s`` (..., C) treated as 1 x 1 images."""
        return s @ self.matrix().t()

    def _linear_on_pixels(self) -> bool:
        m = self.msgdc
        plain = all(type(c) is nn.Conv2d for c in (m.pointwise, m.dw3, m.dw5))
        no_bn = all(isinstance(b, nn.Identity) for b in (m.bn_pointwise, m.bn_dw3, m.bn_dw5))
        # a tracer (ONNX export, fvcore's MAC count) would record the one-off matrix build as per-image work
        return plain and no_bn and m.stride == 1 and not torch.jit.is_tracing()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] == (1, 1) and self._linear_on_pixels():
            return self.on_vectors(x.flatten(1))[..., None, None]
        if use_folded(self) and fusable(self.msgdc) and fusion_wanted(x):
            m = self.msgdc
            fused = cache_of(self).get("fused", [self.project.weight, m.pointwise.weight, m.dw3.weight,
                                                 m.dw5.weight], lambda: fuse_projection(self))
            return fused(x)[0]
        return self.project(self.msgdc(x))
