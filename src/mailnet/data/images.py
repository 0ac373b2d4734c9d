"""Turning stored image arrays into model inputs: float (C, H, W) in [0, 1] at the modality's size and channels."""
from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mailnet.errors import ConfigError, DataError, MailnetWarning

_GRAY_WEIGHTS = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def _scale(arr: np.ndarray) -> torch.Tensor:
    if arr.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(arr)).float().div_(255.0)
    if arr.dtype == np.uint16:
        return torch.from_numpy(arr.astype(np.float32)).div_(65535.0)
    if arr.dtype.kind == "f":
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    raise DataError(f"images must be uint8, uint16 or float, got dtype {arr.dtype}")


def to_nchw(arr: np.ndarray) -> torch.Tensor:
    """``(N, H, W)`` or ``(N, H, W, C)`` -> float ``(N, C, H, W)`` in [0, 1]; alpha channels are dropped."""
    x = _scale(arr)
    if x.ndim == 3:
        x = x.unsqueeze(-1)
    if x.shape[-1] == 4:
        x = x[..., :3]
    return x.permute(0, 3, 1, 2).contiguous()


def set_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Gray -> 3 by replication (the reference), RGB -> 1 by luminance, otherwise unchanged."""
    c = x.shape[1]
    if c == channels:
        return x
    if c == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()
    if c == 3 and channels == 1:
        return (x * _GRAY_WEIGHTS.to(x.dtype)).sum(dim=1, keepdim=True)
    raise DataError(f"cannot convert {c}-channel images to {channels} channels")


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (antialiased when shrinking) to ``size x size``; values stay in [0, 1]."""
    if x.shape[-2:] == (size, size):
        return x
    shrink = x.shape[-1] > size or x.shape[-2] > size
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink).clamp_(0.0, 1.0)


def prepare(images: np.ndarray | list[np.ndarray], *, channels: int, size: int) -> torch.Tensor:
    """A stacked array is converted in one go; a list (files of mixed sizes) one image at a time."""
    if isinstance(images, np.ndarray):
        return resize(set_channels(to_nchw(images), channels), size)
    if not images:
        return torch.zeros(0, channels, size, size)
    out = [resize(set_channels(to_nchw(a[None]), channels), size) for a in images]
    return torch.cat(out, dim=0)


def load_image(path, *, channels: int, size: int) -> torch.Tensor:
    """One image file as a model input ``(1, C, size, size)`` in [0, 1], read and converted exactly as training
    reads its files (8/16-bit and float scaling, grey/colour conversion, bilinear resizing): what a Python user
    feeds a model from ``create_model(..., checkpoint_path=...)``, at its ``checkpoint_meta["modalities"]``."""
    from pathlib import Path

    from mailnet.data.image_files import read_image

    _check_image_args(channels, size)
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: image file not found")
    image = read_image(p)
    _warn_stretched(p, image.shape[:2], size)
    return prepare([image], channels=int(channels), size=int(size))


def _check_image_args(channels: Any, size: Any) -> None:
    """Checked by name before the file is read: a size of 0 or a channel count of 2 would otherwise surface as a
    torch error from deep inside the resizing, naming neither argument."""
    if isinstance(channels, bool) or not isinstance(channels, numbers.Integral) or channels < 1:
        raise ConfigError(f"load_image: channels must be a positive integer, got {channels!r}")
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise ConfigError(f"load_image: size must be a positive integer (pixels per side), got {size!r}")


_stretch_warned = False


def _warn_stretched(path, hw: tuple[int, int], size: int) -> None:
    """Resizing to a square stretches an image that is not one; said once per process (a folder of such images
    would otherwise print a line each), naming the first."""
    global _stretch_warned
    h, w = int(hw[0]), int(hw[1])
    if _stretch_warned or abs(h - w) <= 0.05 * max(h, w):
        return
    _stretch_warned = True
    warnings.warn(f"{path} is {w}x{h} (width x height): resized to {size}x{size}, which changes its aspect ratio; "
                  "crop or pad it to a square first if the model was trained on square images (said once)",
                  MailnetWarning, stacklevel=3)
