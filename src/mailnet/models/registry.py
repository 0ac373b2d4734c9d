"""A timm-style model registry: ``create_model(name, **kwargs)`` and ``list_models()``.

Every registered model is a multimodal classifier with the same calling convention::

    model = create_model(name, in_chans=[3, 3], num_classes=[2, 2], img_size=28)
    logits = model([x_1, x_2])  # one float tensor (B, C_m, H, W) per modality, pixels in [0, 1]
    # -> list of logits, one (B, K_t) tensor per task

``in_chans`` / ``num_classes`` take one entry per modality / task; a bare int means one (``in_chans=3``: one RGB
modality), as in timm. Every model checks its inputs the same way (:mod:`mailnet.models.inputs`): integer images
are refused (``x.float() / 255``), float64 is cast to the weights' dtype, and a size other than ``img_size`` warns
once. Normalisation happens inside the model, so attacks work in [0, 1] pixel space.

Register your own builder like the built-in ones: ``@register_model``, ``@register_model(name="x")`` or
``register_model(fn, name="x", overwrite=True)`` (replace an existing name, e.g. when re-running a notebook cell).

A trained model comes back with ``create_model(name, checkpoint_path=RUN_DIR_OR_CHECKPOINT)``: its architecture
from the checkpoint's metadata.
"""
from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Callable, TypeVar

import torch.nn as nn

from mailnet.errors import ModelError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


Builder = TypeVar("Builder", bound=Callable[..., nn.Module])


def register_model(fn: Builder | None = None, *, name: str | None = None,
                   overwrite: bool = False) -> Builder | Callable[[Builder], Builder]:
    """Register a model builder under ``name`` (default: the function's name); returns the builder unchanged.

    ``@register_model``, ``@register_model(name="x")`` and ``register_model(fn, name="x")`` all work. A name
    already taken is refused unless ``overwrite=True``, so that two models cannot silently shadow each other."""
    if fn is None:
        return lambda f: register_model(f, name=name, overwrite=overwrite)
    if not callable(fn):
        raise ModelError(f"register_model: expected a function that builds a model, got {fn!r}")
    key = getattr(fn, "__name__", None) if name is None else name
    if not isinstance(key, str) or not key or key == "<lambda>":
        raise ModelError("register_model: give a name, e.g. register_model(fn, name=\"my_model\") "
                         f"(a lambda or unnamed callable has none), got {key!r}")
    if not str(getattr(fn, "__module__", "")).startswith("mailnet.models."):
        _import_all()  # a user's model: the built-ins first, so that a clash with one shows now
    if key in _REGISTRY and _REGISTRY[key] is not fn and not overwrite:
        raise ModelError(f"model {key!r} is already registered (by {_describe(_REGISTRY[key])}); "
                         "pass overwrite=True to replace it")
    _REGISTRY[key] = fn
    return fn


def _describe(fn: Callable) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


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
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))} (a model of your own "
                         "is known once its module is imported: `mailnet --import MODULE ...` or $MAILNET_IMPORT)")
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
