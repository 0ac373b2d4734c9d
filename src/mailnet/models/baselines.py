"""Plain torchvision ResNet-18 baselines (design doc section 6): one network per modality trained alone, and late
fusion (pooled features concatenated, one Linear head per task, like MAIL's heads).

They share MAIL's stem choice (``mailnet.layers.stem``) so that every comparison differs only in the part under test.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from torchvision.models import resnet18

from mailnet.errors import ModelError
from mailnet.layers.input_norm import InputNorm
from mailnet.layers.noise import Dropout
from mailnet.models.inputs import ModelArgs, builder_args, check_drop_rate, check_inputs
from mailnet.models.registry import register_model

RESNET18_FEATURES = 512


def resnet18_trunk(in_chans: int, stem: str) -> nn.Module:
    """torchvision ResNet-18 (random init) without its classifier: (B, C, H, W) -> (B, 512) pooled features.

    ``conv1`` is always replaced so any channel count works; the ``cifar`` stem is a 3x3/1 conv with no max-pool.
    """
    net = resnet18(weights=None)
    if stem == "imagenet":
        net.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
    elif stem == "cifar":
        net.conv1 = nn.Conv2d(in_chans, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    else:
        raise ModelError(f"unknown stem {stem!r}")
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    net.fc = nn.Identity()
    return net


class _ResNetBranches(nn.Module):
    """One normalised ResNet-18 trunk per modality (no weight sharing); modalities may differ in image size."""

    needs_equal_sizes = False

    def __init__(self, name: str, args: ModelArgs):
        super().__init__()
        self.model_name = name
        self.in_chans, self.img_sizes, self.stem = args.in_chans, args.img_sizes, args.stem
        self.norms = nn.ModuleList(InputNorm(c) for c in self.in_chans)
        self.trunks = nn.ModuleList(resnet18_trunk(c, self.stem) for c in self.in_chans)

    def features(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        check_inputs(self, xs)
        return [trunk(norm(x)) for norm, trunk, x in zip(self.norms, self.trunks, xs)]


class ResNet18Single(_ResNetBranches):
    """Independent single-modality ResNet-18s in one module: head t reads only modality t's features."""

    def __init__(self, args: ModelArgs, drop_rate: float, mc_dropout: bool):
        super().__init__("resnet18_single", args)
        self.drop = Dropout(drop_rate, mc=mc_dropout)
        self.heads = nn.ModuleList(nn.Linear(RESNET18_FEATURES, k) for k in args.num_classes)

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [head(self.drop(f)) for head, f in zip(self.heads, self.features(xs))]


class ResNet18LateFusion(_ResNetBranches):
    """Late fusion: pooled features of every modality concatenated; every task head reads the whole vector."""

    def __init__(self, args: ModelArgs, drop_rate: float, mc_dropout: bool):
        super().__init__("resnet18_late_fusion", args)
        self.drop = Dropout(drop_rate, mc=mc_dropout)
        width = RESNET18_FEATURES * len(args.in_chans)
        self.heads = nn.ModuleList(nn.Linear(width, k) for k in args.num_classes)

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        fused = self.drop(torch.cat(self.features(xs), dim=1))
        return [head(fused) for head in self.heads]


@register_model
def resnet18_single(in_chans: Sequence[int] = (3,), num_classes: Sequence[int] = (2,),
                    img_size: int | Sequence[int] | None = None, stem: str = "auto", drop_rate: float = 0.0,
                    mc_dropout: bool = False, **kwargs) -> nn.Module:
    """One torchvision ResNet-18 per modality, each head reading only its own branch (needs tasks == modalities)."""
    args = builder_args("resnet18_single", kwargs, in_chans, num_classes, img_size, stem, same_count=True)
    return ResNet18Single(args, check_drop_rate("resnet18_single", drop_rate), bool(mc_dropout))


@register_model
def resnet18_late_fusion(in_chans: Sequence[int] = (3, 3), num_classes: Sequence[int] = (2, 2),
                         img_size: int | Sequence[int] | None = None, stem: str = "auto", drop_rate: float = 0.0,
                         mc_dropout: bool = False, **kwargs) -> nn.Module:
    """One torchvision ResNet-18 per modality; GAP features concatenated; one Linear head per task."""
    args = builder_args("resnet18_late_fusion", kwargs, in_chans, num_classes, img_size, stem)
    return ResNet18LateFusion(args, check_drop_rate("resnet18_late_fusion", drop_rate), bool(mc_dropout))
