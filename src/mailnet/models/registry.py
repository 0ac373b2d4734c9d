"""A timm-style model registry: ``create_model(name, **kwargs)`` and ``list_models()``.

Every registered model is a multimodal classifier with the same calling convention::

    model = create_model(name, in_chans=[3, 3], num_classes=[2, 2], img_size=28)
    logits = model([x_1, x_2])  # one tensor (B, C_m, H, W) per modality, pixels in [0, 1]
    # -> list of logits, one (B, K_t) tensor per task

Normalisation happens inside the model, so attacks work in [0, 1] pixel space.
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from mailnet.errors import ModelError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: the function's name is the model's name."""
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} registered twice")
    _REGISTRY[name] = fn
    return fn


def list_models() -> list[str]:
    _import_all()
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs) -> nn.Module:
    _import_all()
    if name not in _REGISTRY:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**kwargs)


def _import_all() -> None:
    """Import the model modules so their @register_model decorators run."""
    import importlib
    import pkgutil

    import mailnet.models as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name != "registry":
            importlib.import_module(f"mailnet.models.{info.name}")
