"""A timm-style model registry: ``create_model(name, **kwargs)`` and ``list_models()``.

Every registered model is a multimodal classifier with the same calling convention::

    model = create_model(name, in_chans=[3, 3], num_classes=[2, 2], img_size=28)
    logits = model([x_1, x_2])  # one tensor (B, C_m, H, W) per modality, pixels in [0, 1]
    # -> list of logits, one (B, K_t) tensor per task

Normalisation happens inside the model, so attacks work in [0, 1] pixel space. A trained model comes back with
``create_model(name, checkpoint_path=RUN_DIR_OR_CHECKPOINT)``: its architecture from the checkpoint's metadata.
"""
from __future__ import annotations

import fnmatch
from pathlib import Path
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


def list_models(filter: str | list[str] = "") -> list[str]:
    """The registered names, optionally only those matching a shell-style pattern (or any of several), as in timm:
    ``list_models("*mail*")``."""
    _import_all()
    patterns = [filter] if isinstance(filter, str) else list(filter)
    return sorted(n for n in _REGISTRY if not any(patterns) or any(fnmatch.fnmatch(n, p) for p in patterns if p))


def is_model(name: str) -> bool:
    _import_all()
    return name in _REGISTRY


def create_model(name: str, *, checkpoint_path: str | Path | None = None, **kwargs) -> nn.Module:
    """Build a registered model. With ``checkpoint_path`` (a mailnet checkpoint, or a run directory for its best
    one) the architecture comes from the checkpoint's metadata, ``kwargs`` may change what leaves the weights
    valid (e.g. ``fast=False`` for the reference implementation), and the trained weights are loaded; the model is
    returned in eval mode, on the CPU, with ``model.checkpoint_meta``: its modalities (order, channels, size) and
    tasks (order, type, class names)."""
    _import_all()
    if name not in _REGISTRY:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}")
    if checkpoint_path is None:
        return _REGISTRY[name](**kwargs)
    from mailnet.engine.runs import load_model  # the engine builds on the registry, so it is imported on demand

    model, _, _ = load_model(checkpoint_path, expect_name=name, **kwargs)
    return model


def _import_all() -> None:
    """Import the model modules so their @register_model decorators run."""
    import importlib
    import pkgutil

    import mailnet.models as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name != "registry":
            importlib.import_module(f"mailnet.models.{info.name}")
