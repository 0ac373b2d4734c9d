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
from the checkpoint's metadata, which names every argument (:func:`architecture`), defaults included.
"""
from __future__ import annotations

import fnmatch
import inspect
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch.nn as nn

from mailnet.errors import ModelError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_DEFAULTS: dict[str, dict[str, Any]] = {}  # defaults of arguments a builder takes through **kwargs
NOT_ARCHITECTURE = frozenset({"fast"})  # how a model is computed, not what: never pinned by a checkpoint


Builder = TypeVar("Builder", bound=Callable[..., nn.Module])


def register_model(fn: Builder | None = None, *, name: str | None = None, overwrite: bool = False,
                   defaults: dict[str, Any] | None = None) -> Builder | Callable[[Builder], Builder]:
    """Register a model builder under ``name`` (default: the function's name); returns the builder unchanged.

    ``@register_model``, ``@register_model(name="x")`` and ``register_model(fn, name="x")`` all work. A name
    already taken is refused unless ``overwrite=True``, so that two models cannot silently shadow each other.
    ``defaults``: the default values of arguments the builder takes through ``**kwargs`` (its signature shows the
    others), so that checkpoints record them too (:func:`architecture`)."""
    if fn is None:
        return lambda f: register_model(f, name=name, overwrite=overwrite, defaults=defaults)
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
    same = _REGISTRY.get(key) is fn  # registered again (a module re-imported): keep its defaults unless given
    _REGISTRY[key] = fn
    if defaults is not None or not same:
        _DEFAULTS[key] = dict(defaults or {})
    return fn


def architecture(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` completed with the builder's default values, as a checkpoint stores them: a default changed in a
    later release (say Robust-MAIL's ``rpf_fraction``, which leaves the weights' shapes alone) then cannot silently
    rebuild another model from an old checkpoint. Only JSON values are recorded (a default that is a class or a
    function is left to the builder), and never implementation switches such as ``fast``. An unknown ``name``
    returns ``kwargs`` unchanged, for :func:`create_model` to report."""
    _import_all()
    fn = _REGISTRY.get(name)
    if fn is None:
        return dict(kwargs)
    found: dict[str, Any] = {}
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: nothing to read
        params = []
    for p in params:
        if p.default is not p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            found[p.name] = p.default
    found.update(_DEFAULTS.get(name, {}))
    plain = {k: _json_value(v) for k, v in found.items() if k not in NOT_ARCHITECTURE}
    return {**kwargs, **{k: v for k, v in plain.items() if v is not _SKIP and k not in kwargs}}


_SKIP = object()


def _json_value(value: Any) -> Any:
    """``value`` as JSON holds it (tuples become lists), or ``_SKIP`` when JSON cannot."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [_json_value(v) for v in value]
        return _SKIP if any(v is _SKIP for v in items) else items
    return _SKIP


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
