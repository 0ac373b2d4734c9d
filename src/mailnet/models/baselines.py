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
from mailnet.layers.stem import resolve_stem
from mailnet.models.registry import register_model

RESNET18_FEATURES = 512


def check_multimodal_args(model: str, in_chans: Sequence[int], num_classes: Sequence[int], img_size: int | None,
                          same_count: bool = False) -> tuple[list[int], list[int]]:
    """Validate the registry's per-modality / per-task lists once, with one-line errors naming the model."""
    if isinstance(in_chans, int) or isinstance(num_classes, int):
        raise ModelError(f"{model}: in_chans and num_classes must be lists (one entry per modality / task)")
    chans, classes = [int(c) for c in in_chans], [int(k) for k in num_classes]
    if not chans:
        raise ModelError(f"{model}: in_chans is empty; give one channel count per modality")
    if not classes:
        raise ModelError(f"{model}: num_classes is empty; give one class count per task")
    if any(c < 1 for c in chans):
        raise ModelError(f"{model}: in_chans must be positive, got {chans}")
    if any(k < 2 for k in classes):
        raise ModelError(f"{model}: every task needs at least 2 classes, got num_classes={classes}")
    if img_size is not None and int(img_size) < 8:
        raise ModelError(f"{model}: img_size {img_size} is too small (need at least 8 px)")
    if same_count and len(chans) != len(classes):
        raise ModelError(f"{model}: needs one task per modality, got {len(chans)} modalities (in_chans={chans}) "
                         f"and {len(classes)} tasks (num_classes={classes})")
    return chans, classes


def check_drop_rate(model: str, drop_rate: float) -> float:
    if not 0.0 <= float(drop_rate) < 1.0:
        raise ModelError(f"{model}: drop_rate must be in [0, 1), got {drop_rate}")
    return float(drop_rate)


def check_inputs(model: str, xs: Sequence[torch.Tensor], in_chans: Sequence[int]) -> None:
    """Wrong modality counts or channel counts fail with the modality named, not deep inside a conv."""
    if isinstance(xs, torch.Tensor) or len(xs) != len(in_chans):
        got = "a single tensor" if isinstance(xs, torch.Tensor) else f"{len(xs)} tensors"
        raise ModelError(f"{model}: expected a list of {len(in_chans)} tensors (one per modality), got {got}")
    for m, (x, c) in enumerate(zip(xs, in_chans)):
        if x.dim() != 4 or x.shape[1] != c:
            raise ModelError(f"{model}: modality {m} needs shape (B, {c}, H, W), got {tuple(x.shape)}")


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
    """One normalised ResNet-18 trunk per modality (no weight sharing)."""

    def __init__(self, name: str, in_chans: list[int], stem: str):
        super().__init__()
        self.name = name
        self.in_chans = list(in_chans)
        self.stem = stem
        self.norms = nn.ModuleList(InputNorm(c) for c in in_chans)
        self.trunks = nn.ModuleList(resnet18_trunk(c, stem) for c in in_chans)

    def features(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        check_inputs(self.name, xs, self.in_chans)
        return [trunk(norm(x)) for norm, trunk, x in zip(self.norms, self.trunks, xs)]


class ResNet18Single(_ResNetBranches):
    """Independent single-modality ResNet-18s in one module: head t reads only modality t's features."""

    def __init__(self, in_chans: list[int], num_classes: list[int], stem: str, drop_rate: float, mc_dropout: bool):
        super().__init__("resnet18_single", in_chans, stem)
        self.drop = Dropout(drop_rate, mc=mc_dropout)
        self.heads = nn.ModuleList(nn.Linear(RESNET18_FEATURES, k) for k in num_classes)

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [head(self.drop(f)) for head, f in zip(self.heads, self.features(xs))]


class ResNet18LateFusion(_ResNetBranches):
    """Late fusion: pooled features of every modality concatenated; every task head reads the whole vector."""

    def __init__(self, in_chans: list[int], num_classes: list[int], stem: str, drop_rate: float, mc_dropout: bool):
        super().__init__("resnet18_late_fusion", in_chans, stem)
        self.drop = Dropout(drop_rate, mc=mc_dropout)
        width = RESNET18_FEATURES * len(in_chans)
        self.heads = nn.ModuleList(nn.Linear(width, k) for k in num_classes)

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        fused = self.drop(torch.cat(self.features(xs), dim=1))
        return [head(fused) for head in self.heads]


@register_model
def resnet18_single(in_chans: Sequence[int] = (3,), num_classes: Sequence[int] = (2,), img_size: int | None = None,
                    stem: str = "auto", drop_rate: float = 0.0, mc_dropout: bool = False, **kwargs) -> nn.Module:
    """One torchvision ResNet-18 per modality, each head reading only its own branch (needs tasks == modalities)."""
    _reject_unknown("resnet18_single", kwargs)
    chans, classes = check_multimodal_args("resnet18_single", in_chans, num_classes, img_size, same_count=True)
    return ResNet18Single(chans, classes, resolve_stem(stem, img_size),
                      check_drop_rate("resnet18_single", drop_rate), bool(mc_dropout))


@register_model
def resnet18_late_fusion(in_chans: Sequence[int] = (3, 3), num_classes: Sequence[int] = (2, 2),
                         img_size: int | None = None, stem: str = "auto", drop_rate: float = 0.0,
                         mc_dropout: bool = False, **kwargs) -> nn.Module:
    """One torchvision ResNet-18 per modality; GAP features concatenated; one Linear head per task."""
    _reject_unknown("resnet18_late_fusion", kwargs)
    chans, classes = check_multimodal_args("resnet18_late_fusion", in_chans, num_classes, img_size)
    return ResNet18LateFusion(chans, classes, resolve_stem(stem, img_size),
                          check_drop_rate("resnet18_late_fusion", drop_rate), bool(mc_dropout))


def _reject_unknown(model: str, kwargs: dict) -> None:
    """Refuse arguments the registered builder ``model`` does not take, listing the ones it does (read from its
    signature, so the list cannot go stale) so that a typo shows its fix."""
    if kwargs:
        import inspect

        from mailnet.models.registry import _REGISTRY

        builder = _REGISTRY.get(model)
        allowed = sorted(p.name for p in inspect.signature(builder).parameters.values()
                         if p.kind is not p.VAR_KEYWORD) if builder is not None else []
        listed = f" (allowed: {', '.join(allowed)})" if allowed else ""
        raise ModelError(f"{model}: unknown argument(s) {', '.join(sorted(kwargs))}{listed}")
