"""Image folders: ``root/<split>/<class>/*`` (official splits) or ``root/<class>/*`` (one ``all`` pool that the
composer splits with a seeded, saved split). Class names are the sorted folder names."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from mailnet.data.image_files import FileImages, is_image_file, probe_all
from mailnet.data.sources.base import SPLIT_ALIASES, SPLITS, FileListSource
from mailnet.errors import DataError, MailnetWarning


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _class_files(class_dir: Path) -> list[Path]:
    files = sorted(p for p in class_dir.rglob("*") if is_image_file(p))
    if not files:
        raise DataError(f"{class_dir}: empty class folder (no image files)")
    return files


def _check_trained_classes(root: Path, layout: dict[str, Path], classes: list[str]) -> None:
    """Every class folder found under val/test needs its train/ twin: a class the model never sees in training
    (a misnamed folder, often) would be a head output that is never learned, with an AUC of nan. Classes listed
    in ``class_names`` are meant and skip this."""
    for c in classes:
        if (layout["train"] / c).is_dir():
            continue
        found = ", ".join(str((d / c).relative_to(root)) for d in layout.values() if (d / c).is_dir())
        raise DataError(f"{root}: class {c!r} has images in {found} but no {layout['train'].name}/{c} folder, so the "
                        "model could never learn it; add training images, remove or rename the folder, or list "
                        "every class in class_names to keep it")


class ImageFolderSource(FileListSource):
    """Images grouped by class folder; ``task_type`` may be given (e.g. ``ordinal``), else binary or multi-class."""

    kind = "folder"

    def __init__(self, root: str | os.PathLike, *, task_type: str | None = None,
                 class_names: list[str] | None = None, check_headers: bool = True) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: image folder not found")
        top = _subdirs(self.root)
        split_dirs = {SPLIT_ALIASES[d.name.lower()]: d for d in top if d.name.lower() in SPLIT_ALIASES}
        layout: dict[str, Path]
        if split_dirs:
            if "train" not in split_dirs:
                raise DataError(f"{self.root}: split folders found ({', '.join(sorted(split_dirs))}) but no 'train' folder")
            layout = split_dirs
            others = [d.name for d in top if d.name.lower() not in SPLIT_ALIASES]
            if others:  # beside split folders, a class folder at the top is not read: say so
                warnings.warn(f"{self.root}: folder(s) {', '.join(others[:5])} beside the split folders are not "
                              "read (images go in <split>/<class>/)", MailnetWarning, stacklevel=2)
        else:
            layout = {"all": self.root}
        classes = sorted({c.name for d in layout.values() for c in _subdirs(d)})
        if not classes:
            raise DataError(f"{self.root}: no class folders found (expected root/<class>/* or root/<split>/<class>/*)")
        if class_names is not None:
            if sorted(class_names) != classes and list(class_names) != classes:
                raise DataError(f"{self.root}: class_names {list(class_names)} do not match the folders {classes}")
            classes = list(class_names)
        elif "train" in layout:
            _check_trained_classes(self.root, layout, classes)
        self.class_names = tuple(classes)
        self.num_classes = len(classes)
        self.task_type = task_type or ("binary" if self.num_classes == 2 else "multi-class")
        if self.task_type == "multi-label":
            raise DataError(f"{self.root}: an image folder cannot hold multi-label data; use a CSV manifest")
        self._files: dict[str, FileImages] = {}
        self._labels: dict[str, np.ndarray] = {}
        self.channel_counts: set[int] = set()
        for pool, pdir in layout.items():
            paths: list[Path] = []
            labels: list[int] = []
            for ci, cname in enumerate(classes):
                cdir = pdir / cname
                if not cdir.is_dir():
                    continue
                files = _class_files(cdir)
                paths += files
                labels += [ci] * len(files)
            if not paths:
                raise DataError(f"{pdir}: no images in any class folder")
            if check_headers:
                self.channel_counts |= probe_all(paths)
            self._files[pool] = FileImages(paths)
            self._labels[pool] = np.asarray(labels, dtype=np.int64)
        first = self._files["train" if "train" in self._files else "all"]
        self.channels, self.native_size = first.native()

    @property
    def ident(self) -> str:
        return str(self.root)

    def id_root(self) -> Path:
        return self.root

    def file_list(self, pool: str) -> list[str]:
        """Paths relative to the root, recorded in the manifest so a split can be audited file by file."""
        return [str(p.relative_to(self.root)) for p in self._files[pool].paths]


__all__ = ["ImageFolderSource", "SPLITS"]
