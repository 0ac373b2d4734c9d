"""Network stems. Small images (28-64 px) lose everything to a 7x7/2 conv plus max-pool, so they get the
CIFAR-style 3x3/1 stem that MedMNIST's own ResNet-18 (28) uses; every model in a comparison uses the same one."""
from __future__ import annotations

import torch.nn as nn

from mailnet.errors import ModelError

STEMS = ("auto", "imagenet", "cifar")
AUTO_IMAGENET_MIN_SIZE = 96


def resolve_stem(stem: str, img_size: int | None) -> str:
    """``auto`` picks ``imagenet`` for inputs of at least 96 px and ``cifar`` below (or when the size is unknown)."""
    if stem not in STEMS:
        raise ModelError(f"unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
    if stem != "auto":
        return stem
    return "imagenet" if img_size is not None and img_size >= AUTO_IMAGENET_MIN_SIZE else "cifar"


def make_stem(stem: str, in_chans: int, out_chans: int = 64) -> nn.Sequential:
    """``imagenet``: conv7x7/2 + BN + ReLU + maxpool3x3/2. ``cifar``: conv3x3/1 + BN + ReLU."""
    if stem == "imagenet":
        return nn.Sequential(
            nn.Conv2d(in_chans, out_chans, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(out_chans),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
    if stem == "cifar":
        return nn.Sequential(
            nn.Conv2d(in_chans, out_chans, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(out_chans),
            nn.ReLU(inplace=True),
        )
    raise ModelError(f"unknown stem {stem!r}; choose imagenet or cifar (or auto)")
