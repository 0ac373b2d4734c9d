"""MedMNIST 2D datasets from their official ``.npz`` files (any of the 12 flags, sizes 28/64/128/224).

Files are found as ``{flag}.npz`` / ``{flag}_{size}.npz`` directly under the data root or under
``root/{flag}/`` (this project's shared layout). Arrays are read once into memory as uint8 and converted per batch,
which is what makes 28 px training fast on a CPU.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from mailnet.data.labels import check_images, check_labels, task_type_from_medmnist
from mailnet.data.sources.base import SPLITS, ImageSource, SourceInfo
from mailnet.errors import DataError

MEDMNIST_SIZES: tuple[int, ...] = (28, 64, 128, 224)
_CACHE: "OrderedDict[tuple, dict[str, np.ndarray]]" = OrderedDict()
_CACHE_MAX = 8


@functools.lru_cache(maxsize=1)
def medmnist_info() -> dict:
    """``medmnist.INFO`` without importing the whole package (which pulls in scikit-learn and costs seconds)."""
    loaded = sys.modules.get("medmnist.info")
    if loaded is not None:
        return loaded.INFO
    spec = importlib.util.find_spec("medmnist")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the 'medmnist' package is not installed (pip install medmnist); it lists the datasets")
    path = Path(list(spec.submodule_search_locations)[0]) / "info.py"
    try:
        mspec = importlib.util.spec_from_file_location("_mailnet_medmnist_info", path)
        module = importlib.util.module_from_spec(mspec)
        mspec.loader.exec_module(module)
        return module.INFO
    except Exception:  # unusual installs: fall back to the regular import
        from medmnist import INFO

        return INFO


def medmnist_flags_2d() -> list[str]:
    """Every 2D MedMNIST flag the installed ``medmnist`` package knows (3D ones end in ``3d``)."""
    return [f for f in medmnist_info() if not f.endswith("3d")]


def check_flag(flag: str) -> dict:
    info = medmnist_info()
    if flag not in info or flag.endswith("3d"):
        raise DataError(f"unknown MedMNIST 2D flag {flag!r} (known: {', '.join(medmnist_flags_2d())})")
    return info[flag]


def npz_name(flag: str, size: int) -> str:
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def candidate_paths(root: str | os.PathLike, flag: str, size: int) -> list[Path]:
    """Where a file may live, in the order searched."""
    root = Path(root)
    names = [npz_name(flag, size)] + ([f"{flag}_28.npz"] if size == 28 else [])
    return [base / n for base in (root, root / flag) for n in names]


def find_npz(root: str | os.PathLike, flag: str, size: int) -> Path | None:
    for p in candidate_paths(root, flag, size):
        if p.is_file():
            return p
    return None


def available_sizes(root: str | os.PathLike, flag: str) -> list[int]:
    return [s for s in MEDMNIST_SIZES if find_npz(root, flag, s) is not None]


def download_url(flag: str, size: int) -> str:
    info = check_flag(flag)
    return info.get("url" if size == 28 else f"url_{size}", "")


def missing_message(root: str | os.PathLike, flag: str, size: int) -> str:
    if size not in MEDMNIST_SIZES:  # no such file exists anywhere: say so rather than point at an empty address
        return f"{flag}: MedMNIST files come in {', '.join(map(str, MEDMNIST_SIZES))} px, not {size}"
    root = Path(root)
    tried = f"{root / npz_name(flag, size)} or {root / flag / npz_name(flag, size)}"
    return (
        f"MedMNIST file {npz_name(flag, size)} not found (looked for {tried}); download it from "
        f"{download_url(flag, size)} or run `mailnet data download {flag} --size {size} --data-root {root}`"
    )


def choose_size(root: str | os.PathLike, flag: str, target: int, source_size: int | None) -> int:
    """Which file to read: the one asked for, else the target's own size, else the smallest larger file, else the
    largest present. Missing everything -> the target (the caller reports it)."""
    if source_size is not None:
        if source_size not in MEDMNIST_SIZES:
            raise DataError(f"{flag}: MedMNIST size must be one of {MEDMNIST_SIZES}, got {source_size}")
        return source_size
    have = available_sizes(root, flag)
    if target in have:
        return target
    larger = [s for s in have if s >= target]
    if larger:
        return larger[0]
    if have:
        return have[-1]
    return target if target in MEDMNIST_SIZES else 28


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    """Read every array once (cached by path, mtime and size); corrupt files give one-line errors."""
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, zipfile.LargeZipFile) as e:
        raise DataError(f"{path}: not a readable .npz file (truncated or corrupt: {type(e).__name__}: {e})".replace("\n", " ")) from None
    _CACHE[key] = arrays
    while len(_CACHE) > _CACHE_MAX:
        _CACHE.popitem(last=False)
    return arrays


class MedMNISTSource(ImageSource):
    """One MedMNIST 2D dataset with its official train/val/test splits."""

    def __init__(self, flag: str, root: str | os.PathLike, *, size: int = 28, download: bool = False) -> None:
        meta = check_flag(flag)
        if size not in MEDMNIST_SIZES:
            raise DataError(f"{flag}: MedMNIST size must be one of {MEDMNIST_SIZES}, got {size}")
        self.flag, self.size, self.root = flag, size, Path(root)
        path = find_npz(root, flag, size)
        if path is None and download:
            from mailnet.data.download import download_medmnist

            path = download_medmnist(flag, size, root)
        if path is None:
            raise DataError(missing_message(root, flag, size))
        self.path = path
        self.task_type = task_type_from_medmnist(meta["task"])
        labels = meta["label"]
        self.class_names = tuple(labels[str(i)] for i in range(len(labels)))
        self.num_classes = len(self.class_names)
        arrays = _load_npz(path)
        self._images: dict[str, np.ndarray] = {}
        self._labels: dict[str, np.ndarray] = {}
        for split in SPLITS:
            for kind in ("images", "labels"):
                if f"{split}_{kind}" not in arrays:
                    raise DataError(
                        f"{path}: missing key '{split}_{kind}' (found: {', '.join(sorted(arrays)) or 'none'}); "
                        "a MedMNIST file has train/val/test _images and _labels"
                    )
            imgs = check_images(arrays[f"{split}_images"], where=f"{path}: {split}_images")
            labs = check_labels(arrays[f"{split}_labels"], task_type=self.task_type,
                                num_classes=self.num_classes, where=f"{path}: {split}_labels")
            if len(imgs) != len(labs):
                raise DataError(f"{path}: {split}_images has {len(imgs)} rows but {split}_labels has {len(labs)}")
            self._images[split], self._labels[split] = imgs, labs
        first = self._images["train"]
        self.channels = 1 if first.ndim == 3 or first.shape[-1] == 1 else 3
        self.native_size = int(first.shape[1]) if first.shape[1] == first.shape[2] else None

    def info(self) -> SourceInfo:
        return SourceInfo(
            kind="medmnist", ident=self.flag, channels=self.channels, num_classes=self.num_classes,
            task_type=self.task_type, class_names=self.class_names,
            pools={s: int(len(self._labels[s])) for s in SPLITS}, image_size=self.native_size,
            location=str(self.path),
        )

    def labels(self, pool: str) -> np.ndarray:
        return self._labels[pool]

    def images(self, pool: str, idx: np.ndarray) -> np.ndarray:
        return self._images[pool][np.asarray(idx, dtype=np.int64)]
