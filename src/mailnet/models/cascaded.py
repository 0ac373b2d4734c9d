"""Cascaded fusion (design doc section 6): MAIL's ERLA backbone with EMCAM's two attention maps *chained* instead
of computed side by side. It isolates what EMCAM's parallel design buys.

At the end of every stage, modality by modality ("relay race"), with y_{k-1} the already-gated previous modality:

    A_f = frequency_map([x_k, y_{k-1}])          # EMCAM's frequency branch
    x_k' = x_k * A_f                             # the frequency map is applied first
    A_s = spatial_map([x_k', y_{k-1}])           # the spatial map sees the already-gated features
    y_k = x_k' * A_s * alpha_k

The first modality has no predecessor and is gated from itself alone, so information flows only forward along
the chain. EMCAM's parallel fusion weight gamma has no role here and is frozen.
"""
from __future__ import annotations

from typing import Sequence

import torch

from mailnet.layers.emcam import EMCAM
from mailnet.models.mail import MAIL, _build, _implementation, mail_defaults
from mailnet.models.registry import register_model

ALLOWED = ("in_chans", "num_classes", "img_size", "stem", "drop_rate", "mc_dropout", "widths", "groups",
           "input_mean", "input_std")


def cascade(emcam: EMCAM, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Gate the modalities one after another with ``emcam``'s frequency, then spatial, map (see module doc)."""
    out: list[torch.Tensor] = []
    for k, x in enumerate(xs):
        prev = out[-1:]  # the already-gated modality k-1, if any
        idx = [k] + ([k - 1] if prev else [])
        x_f = x * emcam.frequency_map([x, *prev])
        a_s = emcam.spatial_map([x_f, *prev], idx)
        out.append(emcam.apply(x_f, a_s, k))  # x_f * A_s * alpha_k
    return out


class CascadedFusion(MAIL):
    """MAIL's branches, stages, dropout and heads; only the per-stage attention is replaced by :func:`cascade`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for emcam in self.emcams:
            emcam.gamma.requires_grad_(False)  # parallel fusion weight, unused when the maps are chained

    def fuse(self, emcam: EMCAM, hs: list[torch.Tensor]) -> list[torch.Tensor]:
        return cascade(emcam, hs)


@register_model(defaults=mail_defaults(ALLOWED))
def cascaded_fusion(fast: bool = True, **kwargs) -> CascadedFusion:
    """MAIL with cascaded (chained) instead of parallel attention; deterministic, no Robust-MAIL noise.
    Built on MAIL's fast blocks like ``mail`` itself (``fast=False``: the reference blocks), so the comparison
    isolates the fusion design, not the implementation."""
    return _implementation(_build("cascaded_fusion", kwargs, CascadedFusion, ALLOWED), fast)
