"""Label checks shared by every source: one-line errors for wrong shapes, NaN and out-of-range values."""
from __future__ import annotations

import numpy as np

from mailnet.errors import DataError

MEDMNIST_TASKS: dict[str, str] = {
    "binary-class": "binary",
    "multi-class": "multi-class",
    "multi-label, binary-class": "multi-label",
    "ordinal-regression": "ordinal",
}


def task_type_from_medmnist(task: str) -> str:
    """Map medmnist's ``INFO[flag]['task']`` wording onto our four task types."""
    try:
        return MEDMNIST_TASKS[task]
    except KeyError:
        raise DataError(f"unknown medmnist task type {task!r}") from None


def check_labels(raw: np.ndarray, *, task_type: str, num_classes: int, where: str) -> np.ndarray:
    """Validate labels and return them as int64: ``(N,)`` for single-label, ``(N, K)`` 0/1 for multi-label.

    ``where`` names the file and key (e.g. ``'/d/x.npz: train_labels'``) so the message points at the problem.
    """
    arr = np.asarray(raw)
    if arr.dtype.kind not in "iufb":
        raise DataError(f"{where}: labels must be numbers, got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        if np.isnan(arr).any():
            raise DataError(f"{where}: labels contain NaN (row {int(np.argwhere(np.isnan(arr))[0][0])})")
        if not np.all(arr == np.round(arr)):
            raise DataError(f"{where}: labels must be whole numbers, found non-integer values")
    check_label_shape(arr.shape, task_type=task_type, num_classes=num_classes, where=where)
    if task_type == "multi-label":
        bad = (arr != 0) & (arr != 1)
        if bad.any():
            raise DataError(f"{where}: multi-label labels must be 0/1, found {arr[bad].flat[0]!r}")
        return arr.astype(np.int64)
    if arr.ndim == 2:
        arr = arr[:, 0]
    out = arr.astype(np.int64)
    if out.size and (out.min() < 0 or out.max() >= num_classes):
        bad = out[(out < 0) | (out >= num_classes)][0]
        raise DataError(f"{where}: label {int(bad)} out of range for {num_classes} classes (expected 0..{num_classes - 1})")
    return out


def check_label_shape(shape: tuple[int, ...], *, task_type: str, num_classes: int, where: str) -> None:
    """The label shape rule alone: ``(N, K)`` for multi-label, ``(N,)`` or ``(N, 1)`` otherwise; shared with the
    header-only checks of ``mailnet data describe``."""
    shape = tuple(int(s) for s in shape)
    if task_type == "multi-label":
        if len(shape) != 2 or shape[1] != num_classes:
            raise DataError(f"{where}: multi-label labels must have shape (N, {num_classes}), got {shape}")
    elif not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise DataError(f"{where}: labels must have shape (N,) or (N, 1), got {shape}")


def check_image_shape(shape: tuple[int, ...], *, where: str) -> None:
    """The shape rule alone, so that ``mailnet data describe`` can apply it to ``.npy`` headers without reading the
    pixels and still agree with what loading the file accepts."""
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[-1] not in (1, 3, 4)):
        raise DataError(f"{where}: images must have shape (N, H, W) or (N, H, W, C) with C in 1/3/4, got {shape}")


def check_images(arr: np.ndarray, *, where: str) -> np.ndarray:
    """Validate a stacked image array: rank 3 ``(N,H,W)`` or 4 ``(N,H,W,C)`` with C in 1/3/4, uint8/uint16 or float
    in [0, 1] without NaN. Returns the array unchanged (no copy) so memory stays uint8."""
    check_image_shape(arr.shape, where=where)
    if arr.dtype == np.uint8 or arr.dtype == np.uint16:
        return arr
    if arr.dtype.kind == "f":
        if np.isnan(arr).any():
            raise DataError(f"{where}: images contain NaN")
        if arr.size and (arr.min() < 0 or arr.max() > 1):
            raise DataError(f"{where}: float images must lie in [0, 1], found [{float(arr.min()):.3g}, {float(arr.max()):.3g}]")
        return arr
    raise DataError(f"{where}: images must be uint8, uint16 or float in [0, 1], got dtype {arr.dtype}")
