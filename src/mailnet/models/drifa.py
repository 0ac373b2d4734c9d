"""DRIFA-style dual-attention baseline (design doc section 6): a torchvision ResNet-18 per modality with a
per-modality multi-branch fusion attention after the stem and inside and after every residual block, a multimodal
map shared by all branches after every residual block, and Monte-Carlo dropout 0.25 that stays on at inference.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from torchvision.models.resnet import BasicBlock

from mailnet.layers.drifa_attention import MultiBranchFusionAttention, MultimodalSharedAttention
from mailnet.layers.input_norm import InputNorm
from mailnet.layers.noise import Dropout, is_stochastic_at_eval, seed_noise
from mailnet.models.baselines import RESNET18_FEATURES, resnet18_trunk
from mailnet.models.inputs import ModelArgs, builder_args, check_drop_rate, check_inputs
from mailnet.models.registry import register_model


class AttentiveBasicBlock(nn.Module):
    """A torchvision BasicBlock with fusion attention on the residual branch (before the add) and on the output."""

    def __init__(self, block: BasicBlock):
        super().__init__()
        self.block = block
        width = block.bn2.num_features
        self.inner = MultiBranchFusionAttention(width)
        self.outer = MultiBranchFusionAttention(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        identity = x if b.downsample is None else b.downsample(x)
        h = b.relu(b.bn1(b.conv1(x)))
        h = self.inner(b.bn2(b.conv2(h)))
        return self.outer(b.relu(h + identity))


class _DrifaBranch(nn.Module):
    """One modality's trunk: stem (+ attention) and the eight attentive residual blocks, in order."""

    def __init__(self, in_chans: int, stem: str):
        super().__init__()
        net = resnet18_trunk(in_chans, stem)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, MultiBranchFusionAttention(64))
        self.blocks = nn.ModuleList(AttentiveBasicBlock(blk)
                                    for stage in (net.layer1, net.layer2, net.layer3, net.layer4) for blk in stage)


class DRIFA(nn.Module):
    """Per-modality DRIFA trunks linked by a shared multimodal map after every block; heads read the concatenation."""

    needs_equal_sizes = True  # the shared map after every block mixes the branches' feature maps

    # (stage, block) positions in ``_DrifaBranch.blocks``; dropout follows the first (strided) block of stages 2-4
    BLOCK_WIDTHS = (64, 64, 128, 128, 256, 256, 512, 512)
    DROPOUT_AFTER = (2, 4, 6)

    def __init__(self, args: ModelArgs, drop_rate: float, mc_dropout: bool):
        super().__init__()
        self.model_name = "drifa"
        self.in_chans, self.img_sizes = args.in_chans, args.img_sizes
        m = len(self.in_chans)
        self.norms = nn.ModuleList(InputNorm(c) for c in self.in_chans)
        self.branches = nn.ModuleList(_DrifaBranch(c, args.stem) for c in self.in_chans)
        self.shared = nn.ModuleList(MultimodalSharedAttention(w, m) for w in self.BLOCK_WIDTHS)
        self.drop = Dropout(drop_rate, mc=mc_dropout)
        self.heads = nn.ModuleList(nn.Linear(RESNET18_FEATURES * m, k) for k in args.num_classes)

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        check_inputs(self, xs)
        hs = [br.stem(norm(x)) for br, norm, x in zip(self.branches, self.norms, xs)]
        for j, shared in enumerate(self.shared):
            hs = shared([br.blocks[j](h) for br, h in zip(self.branches, hs)])
            if j in self.DROPOUT_AFTER:
                hs = [self.drop(h) for h in hs]
        fused = torch.cat([h.mean(dim=(2, 3)) for h in hs], dim=1)
        return [head(fused) for head in self.heads]

    def seed_noise(self, seed: int, device: torch.device | str | None = None) -> torch.Generator:
        """Draw the MC-dropout masks from a fresh generator seeded with ``seed`` (replays the same draw)."""
        return seed_noise(self, seed, device)

    @property
    def stochastic_at_eval(self) -> bool:
        return is_stochastic_at_eval(self)


@register_model
def drifa(in_chans: Sequence[int] = (3, 3), num_classes: Sequence[int] = (2, 2),
          img_size: int | Sequence[int] | None = None, stem: str = "auto", drop_rate: float = 0.25,
          mc_dropout: bool = True, **kwargs) -> nn.Module:
    """DRIFA-style dual attention network; Monte-Carlo dropout 0.25 on at inference by default, as published."""
    args = builder_args("drifa", kwargs, in_chans, num_classes, img_size, stem)
    return DRIFA(args, check_drop_rate("drifa", drop_rate), bool(mc_dropout))
