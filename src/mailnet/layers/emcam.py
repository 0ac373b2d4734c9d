"""EMCAM: the shared, dual-domain (frequency + spatial), *parallel* cross-modal attention applied at the end of
every MAIL stage (spec sec. 2.3; Robust-MAIL's noisy map of sec. 3.2).

The pieces are separate methods so that other fusion designs (the cascaded baseline) can compose them:
``frequency_map(xs)``, ``spatial_map(xs)``, ``fuse(a_f, a_s)``, ``attention_map(xs)``, ``gate(A)``, ``apply``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from mailnet.layers.dct import ChannelDCT
from mailnet.layers.msgdc import MSGDCProjection
from mailnet.layers.noise import ModulatedNoise


class EMCAM(nn.Module):
    """M inputs x_1..x_M (B, C, H, W) -> M outputs y_i = x_i * G * alpha_i, with one map G shared by all.

    Frequency branch, per modality (D = orthonormal DCT-II along channels, f = sigmoid(Linear(C, C)) shared):
        H1 = f(max_HW D), L1 = f(mean_HW D), L2 = f(min_HW D)
        High = H1 + (H1 - L1) + (D - L2);  Low = L1 + L2;  Mean = High - Low
        A_f = sigmoid( sum_i m1*High_i + m2*Low_i + m3*Mean_i )                    (B, C, H, W)
    Spatial branch, with Mop the shared MSGDC projection (used twice):
        s_i = maxpool_HW(Mop(x_i)) + avgpool_HW(Mop(x_i))                         (B, C, 1, 1)
        chained cross-modal skips: s_k' = s_k + 2*Mop(s_k) + [s_{k-1}' if k > 1] + [s_{k+1} if k < M]
        and the last one (k = M > 2) also adds s_1' (the ring closes); for M = 2 this gives the spec's
        s_1' = s_1 + 2 Mop(s_1) + s_2,  s_2' = s_2 + 2 Mop(s_2) + s_1';  for M = 1 no cross term.
        A_s = sigmoid( sum_i lambda_i * s_i' )  with per-channel lambda_i
    Fusion (parallel): A = sigmoid(gamma * A_f + lambda_1 * A_s)   (lambda_1 reused, as the reference does).
    Robust (``attention_noise=True``): A_n = clip(A + w*(n + n^2), 0, 1), n ~ N(0, noise_std^2), w a trainable
    scalar; G = A_n^5 * A. Otherwise G = A. alpha_i, lambda_i (per channel), m1..m3 and gamma all start at 1.

    ``cross_modal=False`` is an ablation (and a test hook): each modality gets its own map computed from itself
    alone (its own terms, no sum over modalities, no cross-modal skip), so modalities no longer interact.
    """

    def __init__(self, channels: int, num_modalities: int, groups: int = 16, attention_noise: bool = False,
                 noise_std: float = 0.6, cross_modal: bool = True):
        super().__init__()
        if num_modalities < 1:
            raise ValueError(f"EMCAM needs at least one modality, got {num_modalities}")
        self.channels, self.num_modalities = int(channels), int(num_modalities)
        self.cross_modal = bool(cross_modal)
        self.dct = ChannelDCT(channels)
        self.freq_fc = nn.Linear(channels, channels)
        self.freq_weights = nn.Parameter(torch.ones(3))  # m1, m2, m3
        self.mop = MSGDCProjection(channels, groups)
        self.lambdas = nn.Parameter(torch.ones(num_modalities, channels))
        self.gamma = nn.Parameter(torch.tensor(1.0))
        self.alphas = nn.Parameter(torch.ones(num_modalities, channels))
        self.attention_noise = bool(attention_noise)
        self.noise = ModulatedNoise(noise_std, 1.0, trainable=True) if attention_noise else None

    # -- frequency branch -------------------------------------------------------------------------------------
    def frequency_terms(self, x: torch.Tensor) -> torch.Tensor:
        """One modality's contribution m1*High + m2*Low + m3*Mean, (B, C, H, W), before the sum and sigmoid."""
        d = self.dct(x)
        flat = d.flatten(2)
        h1 = torch.sigmoid(self.freq_fc(flat.amax(dim=2)))[..., None, None]
        l1 = torch.sigmoid(self.freq_fc(flat.mean(dim=2)))[..., None, None]
        l2 = torch.sigmoid(self.freq_fc(flat.amin(dim=2)))[..., None, None]
        high = h1 + (h1 - l1) + (d - l2)
        low = l1 + l2
        mean = high - low
        m1, m2, m3 = self.freq_weights
        return m1 * high + m2 * low + m3 * mean

    def frequency_map(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        """A_f = sigmoid(sum over the given modalities of their frequency terms), (B, C, H, W)."""
        return torch.sigmoid(sum(self.frequency_terms(x) for x in xs))

    # -- spatial / local branch ----------------------------------------------------------------------------------
    def local_descriptor(self, x: torch.Tensor) -> torch.Tensor:
        """s = maxpool(Mop(x)) + avgpool(Mop(x)) over H x W, (B, C, 1, 1)."""
        p = self.mop(x)
        return p.amax(dim=(2, 3), keepdim=True) + p.mean(dim=(2, 3), keepdim=True)

    def chain(self, s: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The chained cross-modal skips s -> s' (see the class docstring)."""
        m = len(s)
        out: list[torch.Tensor] = []
        for k in range(m):
            t = s[k] + 2 * self.mop(s[k])
            if k > 0:
                t = t + out[k - 1]
            if k < m - 1:
                t = t + s[k + 1]
            elif k > 1:  # the last closes the ring with s_1' (for M = 2, s_1' is already its predecessor)
                t = t + out[0]
            out.append(t)
        return out

    def spatial_map(self, xs: Sequence[torch.Tensor], modalities: Sequence[int] | None = None) -> torch.Tensor:
        """A_s = sigmoid(sum_i lambda_i * s_i'), (B, C, 1, 1). ``modalities``: whose lambda each x uses."""
        idx = list(range(len(xs))) if modalities is None else list(modalities)
        chained = self.chain([self.local_descriptor(x) for x in xs])
        return torch.sigmoid(sum(self.lambdas[i].view(1, -1, 1, 1) * s for i, s in zip(idx, chained)))

    # -- fusion and gating ------------------------------------------------------------------------------------
    def fuse(self, a_f: torch.Tensor, a_s: torch.Tensor, modality: int = 0) -> torch.Tensor:
        """A = sigmoid(gamma * A_f + lambda_modality * A_s) (the spec uses lambda_1, i.e. ``modality=0``)."""
        return torch.sigmoid(self.gamma * a_f + self.lambdas[modality].view(1, -1, 1, 1) * a_s)

    def attention_map(self, xs: Sequence[torch.Tensor], modalities: Sequence[int] | None = None) -> torch.Tensor:
        """The parallel map A from both branches computed side by side on the same inputs, (B, C, H, W)."""
        idx = list(range(len(xs))) if modalities is None else list(modalities)
        return self.fuse(self.frequency_map(xs), self.spatial_map(xs, idx), idx[0])

    def gate(self, a: torch.Tensor) -> torch.Tensor:
        """The map actually applied: A, or A_n^5 * A with Robust-MAIL's modulated noise (a fresh draw per call)."""
        if self.noise is None:
            return a
        return self.noise(a) ** 5 * a

    def apply(self, x: torch.Tensor, g: torch.Tensor, modality: int) -> torch.Tensor:
        """y = x * G * alpha_modality."""
        return x * g * self.alphas[modality].view(1, -1, 1, 1)

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        self._check(xs)
        if self.cross_modal:
            g = self.gate(self.attention_map(xs))
            return [self.apply(x, g, i) for i, x in enumerate(xs)]
        return [self.apply(x, self.gate(self.attention_map([x], [i])), i) for i, x in enumerate(xs)]

    def _check(self, xs: Sequence[torch.Tensor]) -> None:
        if len(xs) != self.num_modalities:
            raise ValueError(f"EMCAM built for {self.num_modalities} modalities got {len(xs)} inputs")
        ref = tuple(xs[0].shape)
        for i, x in enumerate(xs):
            if x.dim() != 4 or x.shape[1] != self.channels or tuple(x.shape) != ref:
                raise ValueError(f"EMCAM input {i} has shape {tuple(x.shape)}; expected (B, {self.channels}, H, W) "
                                 f"equal to input 0's {ref}")

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, num_modalities={self.num_modalities}, "
                f"attention_noise={self.attention_noise}, cross_modal={self.cross_modal}")
