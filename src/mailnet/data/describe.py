"""Summaries of what a data root holds, read from ``.npz`` headers only (fast even for 224 px files)."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from mailnet.data.labels import check_image_shape, check_label_shape, task_type_from_medmnist
from mailnet.data.sources.base import SPLITS
from mailnet.data.sources.medmnist_npz import MEDMNIST_SIZES, check_flag, find_npz, medmnist_flags_2d
from mailnet.errors import DataError


def npz_shapes(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], str]]:
    """Shape and dtype of every array in an ``.npz`` without reading the data."""
    out: dict[str, tuple[tuple[int, ...], str]] = {}
    try:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                if not name.endswith(".npy"):
                    continue
                with z.open(name) as f:
                    version = np.lib.format.read_magic(f)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(f)
                out[name[:-4]] = (tuple(int(s) for s in shape), str(dtype))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz file (truncated or corrupt: {type(e).__name__}: {e})") from None
    return out


def describe_medmnist_file(path: Path, flag: str, size: int) -> dict:
    meta = check_flag(flag)
    shapes = npz_shapes(path)
    row: dict = {"dataset": flag, "size": size, "file": str(path), "task_type": task_type_from_medmnist(meta["task"]),
                 "num_classes": len(meta["label"]),
                 "class_names": [meta["label"][str(i)] for i in range(len(meta["label"]))]}
    for split in SPLITS:
        key = f"{split}_labels"
        if key not in shapes or f"{split}_images" not in shapes:
            raise DataError(f"{path}: missing key '{split}_images' or '{key}' (found: {', '.join(sorted(shapes))})")
        row[split] = _checked_rows(path, split, shapes[f"{split}_images"][0], shapes[key][0], meta)
    img_shape = shapes["train_images"][0]
    row["channels"] = 1 if len(img_shape) == 3 or img_shape[-1] == 1 else img_shape[-1]
    row["image_shape"] = list(img_shape[1:])
    return row


def _checked_rows(path: Path, split: str, images: tuple[int, ...], labels: tuple[int, ...], meta: dict) -> int:
    """A split's row count, once its header shapes pass the rules loading applies: a file whose arrays disagree
    would otherwise be described with the labels' count (or an image axis as its channels) and fail only later."""
    where = f"{path}: {split}"
    check_image_shape(images, where=f"{where}_images")
    check_label_shape(labels, task_type=task_type_from_medmnist(meta["task"]), num_classes=len(meta["label"]),
                      where=f"{where}_labels")
    if images[0] != labels[0]:
        raise DataError(f"{where}_images has {images[0]} rows but {split}_labels has {labels[0]}")
    return labels[0]


def describe_root(root: str | os.PathLike, flags: list[str] | None = None, sizes: list[int] | None = None) -> list[dict]:
    """One row per MedMNIST file found. Explicit ``flags`` must exist (at some size, or at the sizes asked for)."""
    root = Path(root)
    rows: list[dict] = []
    for flag in flags or medmnist_flags_2d():
        check_flag(flag)
        found = False
        for size in sizes or MEDMNIST_SIZES:
            path = find_npz(root, flag, size)
            if path is not None:
                rows.append(describe_medmnist_file(path, flag, size))
                found = True
        if flags and not found:
            from mailnet.data.sources.medmnist_npz import missing_message

            raise DataError(missing_message(root, flag, (sizes or [28])[0]))
    return rows


def format_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """Plain fixed-width table (no extra dependency); ``columns`` are (key, heading) pairs."""
    cells = [[h for _, h in columns]] + [[_cell(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(v: object) -> str:
    if isinstance(v, (list, tuple)):
        text = "; ".join(str(x) for x in v)
        return text if len(text) <= 40 else text[:37] + "..."
    return "" if v is None else str(v)
