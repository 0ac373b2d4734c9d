"""Fast EMCAM: the same map with far fewer full-size intermediate tensors.

Reference, per modality: DCT (B, C, H, W), then High, Low, Mean and the weighted sum (four more full-size tensors),
then the sum over modalities. Here the algebra is collapsed first:

    m1*High + m2*Low + m3*Mean = (m1 + m3)*D_i + c_i,   c_i = (m1 + m3)(2 H1 - L1 - L2) + (m2 - m3)(L1 + L2)

with c_i (B, C) per image, so A_f = sigmoid((m1 + m3) * sum_i D_i + sum_i c_i): one full-size sum and one
sigmoid. The channel DCT is a (B*H*W, C) x (C, C) matrix product on the channels-last layout, all pooled
statistics share one Linear call, and the spatial branch's Mop on pooled descriptors is a C x C matrix product
(:class:`FastMSGDCProjection`). Random gating (Robust-MAIL) goes through the reference's ``gate``. Where stacked
streams are wanted (:func:`mailnet.layers.fast.stacked.stacking_wanted`: by default CPU inference at small
batches), the modalities go through the shared DCT and Mop as one batch: M times fewer calls, the same sums.
"""
from __future__ import annotations

from typing import Sequence

import torch

from mailnet.layers.emcam import EMCAM
from mailnet.layers.fast.fast_msgdc import FastMSGDCProjection
from mailnet.layers.fast.ops import spatial_max_plus
from mailnet.layers.fast.stacked import stacking_wanted


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C); a view for channels-last input."""
    b, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, h * w, c)


def _stacked(xs: Sequence[torch.Tensor]) -> bool:
    return len(xs) > 1 and stacking_wanted(xs[0]) and not torch.jit.is_tracing()


class FastEMCAM(EMCAM):
    """:class:`EMCAM` with the same parameters; the cross-modal map computed in NHWC with collapsed algebra."""

    def frequency_logits(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        """sum_i [m1*High_i + m2*Low_i + m3*Mean_i], as (B, H*W, C)."""
        dmat = self.dct.matrix.to(xs[0].dtype)
        if _stacked(xs):  # all modalities as one batch through the shared DCT
            m, b = len(xs), xs[0].shape[0]
            d = _nhwc(torch.cat(xs, dim=0)) @ dmat.t()  # (M*B, HW, C)
            stats = torch.stack([d.amax(dim=1), d.mean(dim=1), d.amin(dim=1)]).view(3, m, b, -1)
            dsum = d.view(m, b, *d.shape[1:]).sum(dim=0)
        else:
            ds = [_nhwc(x) @ dmat.t() for x in xs]  # D_i, (B, HW, C)
            stats = torch.stack([torch.stack([d.amax(dim=1), d.mean(dim=1), d.amin(dim=1)]) for d in ds], dim=1)
            dsum = ds[0]
            for d in ds[1:]:
                dsum = dsum + d
        f = torch.sigmoid(self.freq_fc(stats))  # (3, M, B, C): H1, L1, L2 per modality
        h1, l1, l2 = f.unbind(0)
        m1, m2, m3 = self.freq_weights
        k_high = m1 + m3
        c = (k_high * (2 * h1 - l1 - l2) + (m2 - m3) * (l1 + l2)).sum(dim=0)  # (B, C)
        return torch.addcmul(c[:, None, :], dsum, k_high)

    def spatial_logits(self, xs: Sequence[torch.Tensor], modalities: Sequence[int]) -> torch.Tensor:
        """sum_i lambda_i * s_i' (B, C), the argument of A_s's sigmoid."""
        mop = self.mop
        if _stacked(xs):  # all modalities as one batch through the shared Mop
            mx, mean = spatial_max_plus(mop(torch.cat(xs, dim=0)), "mean")
            s = list((mx + mean).chunk(len(xs), dim=0))
        else:
            s = []
            for x in xs:
                mx, mean = spatial_max_plus(mop(x), "mean")
                s.append(mx + mean)
        if isinstance(mop, FastMSGDCProjection) and mop._linear_on_pixels():
            ms = mop.on_vectors(torch.stack(s)).unbind(0)
        else:
            ms = [mop(v[..., None, None]).flatten(1) for v in s]
        out: list[torch.Tensor] = []
        n = len(s)
        for k in range(n):
            t = s[k] + 2 * ms[k]
            if k > 0:
                t = t + out[k - 1]
            if k < n - 1:
                t = t + s[k + 1]
            elif k > 1:
                t = t + out[0]
            out.append(t)
        return sum(self.lambdas[i] * t for i, t in zip(modalities, out))

    def fast_attention_map(self, xs: Sequence[torch.Tensor], modalities: Sequence[int]) -> torch.Tensor:
        """A = sigmoid(gamma * A_f + lambda_first * A_s), returned as a channels-last (B, C, H, W) tensor."""
        b, c, h, w = xs[0].shape
        a_f = torch.sigmoid(self.frequency_logits(xs))
        a_s = torch.sigmoid(self.spatial_logits(xs, modalities))
        lam = self.lambdas[modalities[0]]
        a = torch.sigmoid(torch.addcmul((lam * a_s)[:, None, :], a_f, self.gamma))
        return a.reshape(b, h, w, c).permute(0, 3, 1, 2)

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        self._check(xs)
        if self.cross_modal:
            g = self.gate(self.fast_attention_map(xs, list(range(len(xs)))))
            return [x * g * self.alphas[i].view(1, -1, 1, 1) for i, x in enumerate(xs)]
        return [x * self.gate(self.fast_attention_map([x], [i])) * self.alphas[i].view(1, -1, 1, 1)
                for i, x in enumerate(xs)]
