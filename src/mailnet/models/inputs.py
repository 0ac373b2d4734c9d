"""What every registered model checks about its arguments and its inputs, in one place, so that all of them accept
the same things and fail with the same one-line :class:`~mailnet.errors.ModelError`.

Arguments: ``in_chans`` and ``num_classes`` are lists (one entry per modality / task); a bare int means a list of
one, as in timm (``in_chans=3``: one 3-channel modality). ``img_size`` is one size for every modality or a list.

Inputs (:func:`check_inputs`, run at every forward): a list of one ``(B, C_m, H, W)`` floating-point tensor per
modality, pixels in [0, 1]. Integer images (``torchvision.io.read_image`` gives uint8 in 0-255) are refused, not
guessed at. float64 is accepted and cast to the weights' dtype by :class:`~mailnet.layers.input_norm.InputNorm`,
because ``torch.from_numpy`` gives float64 and the cast loses nothing a float32 model could use. Only python-level
metadata is read (dtype, shapes, devices): nothing synchronises with the device, so forwards stay fast and
CUDA-graph friendly; pixel values are never inspected.
"""
from __future__ import annotations

import inspect
import numbers
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn as nn

from mailnet.errors import MailnetWarning, ModelError
from mailnet.layers.stem import resolve_stem

MIN_IMG_SIZE = 8  # below this the stride-2 stages leave nothing to pool
FLOAT_HINT = "convert with x.float() / 255 or read files with mailnet.load_image"


@dataclass(frozen=True)
class ModelArgs:
    """The validated shape arguments of a model."""

    in_chans: list[int]
    num_classes: list[int]
    img_sizes: list[int] | None  # one per modality; None: unknown (no size warning)
    stem: str


def int_list(model: str, name: str, values: Any, minimum: int = 1, why: str = "") -> list[int]:
    """``values`` as a non-empty list of ints >= ``minimum``; a bare int is a list of one."""
    if isinstance(values, numbers.Integral) and not isinstance(values, bool):
        values = [values]
    items = list(values) if isinstance(values, Iterable) and not isinstance(values, (str, bytes)) else None
    if not items or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum for v in items):
        raise ModelError(f"{model}: {name} must be an int or a non-empty list of integers >= {minimum}{why}, "
                         f"got {values!r}")
    return [int(v) for v in items]


def model_args(model: str, in_chans: Any, num_classes: Any, img_size: Any, stem: str,
               same_count: bool = False) -> ModelArgs:
    """Validate the registry's shape arguments once, with one-line errors naming ``model``. With several image
    sizes the stem is chosen for the smallest (every branch uses the same stem)."""
    chans = int_list(model, "in_chans", in_chans, why=" (one channel count per modality)")
    # 1 is allowed: a multi-label task of one 0/1 column is scored with one sigmoid output
    classes = int_list(model, "num_classes", num_classes, minimum=1)
    if same_count and len(chans) != len(classes):
        raise ModelError(f"{model}: needs one task per modality, got {len(chans)} modalities (in_chans={chans}) "
                         f"and {len(classes)} tasks (num_classes={classes})")
    sizes = None
    if img_size is not None:
        sizes = int_list(model, "img_size", img_size, minimum=MIN_IMG_SIZE, why=" px")
        if len(sizes) == 1:
            sizes = sizes * len(chans)
        elif len(sizes) != len(chans):
            raise ModelError(f"{model}: img_size has {len(sizes)} entries for {len(chans)} modalities; "
                             "give one size, or one per modality")
    return ModelArgs(chans, classes, sizes, resolve_stem(stem, min(sizes) if sizes else None))


def builder_args(model: str, kwargs: dict, in_chans: Any, num_classes: Any, img_size: Any, stem: str,
                 same_count: bool = False) -> ModelArgs:
    """For a builder that names its arguments and collects the rest in ``kwargs``: refuse those, validate these."""
    reject_unknown(model, kwargs)
    return model_args(model, in_chans, num_classes, img_size, stem, same_count)


def check_drop_rate(model: str, drop_rate: float) -> float:
    if not 0.0 <= float(drop_rate) < 1.0:
        raise ModelError(f"{model}: drop_rate must be in [0, 1), got {drop_rate}")
    return float(drop_rate)


def per_modality(model: str, name: str, values: Any, count: int) -> list[Any]:
    """Split a per-modality option: a number or a flat list (per channel) is shared by every modality; a list of
    lists gives each modality its own, e.g. ``input_mean=[[0.5], [0.485, 0.456, 0.406]]``."""
    if isinstance(values, (list, tuple)) and any(isinstance(v, (list, tuple)) for v in values):
        if len(values) != count:
            raise ModelError(f"{model}: {name} has {len(values)} per-modality entries for {count} modalities")
        return list(values)
    return [values] * count


def reject_unknown(model: str, kwargs: dict, accepted: Iterable[str] = ()) -> None:
    """Refuse arguments outside ``accepted``, listing those and the registered builder's own (read from its
    signature, so the list cannot go stale) so that a typo shows its fix."""
    unknown = sorted(set(kwargs) - set(accepted))
    if not unknown:
        return
    from mailnet.models.registry import _REGISTRY

    builder = _REGISTRY.get(model)
    own = {p.name for p in inspect.signature(builder).parameters.values()
           if p.kind is not p.VAR_KEYWORD} if builder is not None else set()
    allowed = sorted(set(accepted) | own)
    listed = f" (allowed: {', '.join(allowed)})" if allowed else ""
    raise ModelError(f"{model}: unknown argument(s) {', '.join(unknown)}{listed}")


def check_inputs(model: nn.Module, xs: Sequence[torch.Tensor]) -> None:
    """One clear line for the usual input mistakes; reads the model's ``model_name``, ``in_chans``, ``img_sizes``
    and ``needs_equal_sizes``. Warns once per model when the image size differs from the one it was built for
    (a fully convolutional model runs, but its predictions shift)."""
    name, chans = model.model_name, model.in_chans
    if isinstance(xs, torch.Tensor) or not isinstance(xs, (list, tuple)):
        got = "a single tensor" if isinstance(xs, torch.Tensor) else type(xs).__name__
        raise ModelError(f"{name}: expected a list of {len(chans)} tensors (one per modality), got {got}")
    if len(xs) != len(chans):
        raise ModelError(f"{name}: expected a list of {len(chans)} tensors (one per modality), got {len(xs)}")
    weight = next(model.parameters(), None)
    for i, (x, c) in enumerate(zip(xs, chans)):
        where = f"{name} input for modality {i}"
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ModelError(f"{where}: expected a (B, {c}, H, W) tensor, got {got}")
        if not x.is_floating_point():
            raise ModelError(f"{where}: dtype {x.dtype}, but pixels must be floats in [0, 1]; {FLOAT_HINT}")
        if x.shape[1] != c:
            raise ModelError(f"{where}: expected {c} channels, got {x.shape[1]}")
        if x.shape[0] != xs[0].shape[0]:
            raise ModelError(f"{where}: batch size {x.shape[0]} differs from modality 0's {xs[0].shape[0]}")
        if model.needs_equal_sizes and x.shape[2:] != xs[0].shape[2:]:
            raise ModelError(f"{where}: image size {tuple(x.shape[2:])} differs from modality 0's "
                             f"{tuple(xs[0].shape[2:])}; {name} fuses feature maps across modalities")
        if weight is not None and x.device != weight.device:
            raise ModelError(f"{where}: on {x.device}, but the model is on {weight.device}; move one with .to()")
    _warn_size_once(model, xs)


def _warn_size_once(model: nn.Module, xs: Sequence[torch.Tensor]) -> None:
    sizes = model.img_sizes
    if sizes is None or getattr(model, "_size_warned", False):
        return
    for i, (x, s) in enumerate(zip(xs, sizes)):
        if tuple(x.shape[2:]) != (s, s):
            model._size_warned = True
            warnings.warn(f"{model.model_name} was built for {s}x{s} images, but modality {i} is "
                          f"{x.shape[2]}x{x.shape[3]}: predictions shift with the scale (resize, e.g. "
                          f"mailnet.load_image(path, channels={x.shape[1]}, size={s})); warned once per model",
                          MailnetWarning, stacklevel=4)
            return
