"""What every image source offers the composer: named pools of images with labels, and a self-description.

A *pool* is a group of samples as the source stores them: MedMNIST has ``train``/``val``/``test``; an image folder
without split sub-folders has a single ``all`` pool that the composer splits (seeded, and recorded in the
manifest). Keeping pools separate from splits lets one manifest format describe every source.
"""
from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mailnet.data.image_files import FileImages

SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_ALIASES: dict[str, str] = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@dataclass(frozen=True)
class SourceInfo:
    """The facts a source knows about itself before any resizing or channel handling."""

    kind: str  # medmnist | folder | csv | paired-csv
    ident: str  # flag or path, enough for a user to find the data again
    channels: int  # native channels (1 gray, 3 RGB)
    num_classes: int
    task_type: str  # binary | multi-class | multi-label | ordinal
    class_names: tuple[str, ...] = field(default=())
    pools: dict[str, int] = field(default_factory=dict)
    image_size: int | None = None  # native square size when uniform, else None
    location: str = ""  # the file or folder read

    def to_dict(self) -> dict:
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        return d


class ImageSource(ABC):
    """One modality's images and labels, held so that ``images(pool, idx)`` is cheap to call per batch."""

    # channel counts met across the source's files (sources of files set it; None: one array, one count)
    channel_counts: set[int] | None = None

    @abstractmethod
    def info(self) -> SourceInfo:
        """The source's description (channels, classes, task type, pool sizes)."""

    @abstractmethod
    def labels(self, pool: str) -> np.ndarray:
        """All labels of a pool: int64 ``(N,)`` for single-label tasks, int64 0/1 ``(N, K)`` for multi-label."""

    @abstractmethod
    def images(self, pool: str, idx: np.ndarray) -> np.ndarray | list[np.ndarray]:
        """Images at ``idx``: a stacked array ``(n, H, W[, C])`` or a list of ``(H, W[, C])`` arrays
        (uint8 0..255, uint16 0..65535 or float in [0, 1])."""

    def pool_size(self, pool: str) -> int:
        return int(self.info().pools[pool])

    def describe(self) -> dict:
        return self.info().to_dict()

    def fingerprint(self, pool: str) -> str:
        """A short digest of a pool's labels (and file names, where there are files), stored in manifests so a
        manifest applied to changed data is refused instead of silently pointing at other samples."""
        h = hashlib.sha1()
        names = self.file_names(pool)
        if names is not None:
            h.update("\n".join(names).encode())
        else:
            h.update(np.ascontiguousarray(self.labels(pool)).tobytes())
        return h.hexdigest()[:16]

    def file_names(self, pool: str) -> list[str] | None:
        """Names of the files behind a pool, in order (None for array-backed sources)."""
        return None

    def sample_ids(self, pool: str, idx: np.ndarray) -> list[str]:
        """Who the samples at ``idx`` of ``pool`` are, so a prediction row can be traced back: a file's path
        relative to ``id_root`` for sources of files (their ``_files``: pool -> ``FileImages``), else
        ``pool[index]`` (MedMNIST: ``test[123]``, the official split and the index into it)."""
        files = self.pool_files(pool)
        if files is not None:
            return files.ids(idx, self.id_root())
        return [f"{pool}[{int(i)}]" for i in np.asarray(idx).reshape(-1)]

    def pool_files(self, pool: str) -> FileImages | None:
        """The image files behind ``pool`` (sources of files keep them in ``_files``); None for array sources."""
        files = getattr(self, "_files", None)
        return files.get(pool) if isinstance(files, dict) and isinstance(files.get(pool), FileImages) else None

    def id_root(self) -> Path | None:
        """The folder file ids are relative to (sources of files override it); None: ids as stored."""
        return None


class FileListSource(ImageSource):
    """A source whose pools are lists of image files (folders, CSV manifests).

    Subclasses fill ``_files`` (pool -> ``FileImages``) and ``_labels`` and set ``kind``, ``ident``, ``channels``,
    ``native_size``, ``num_classes``, ``task_type`` and ``class_names``; the rest is common.
    """

    kind: str = "files"
    _files: dict
    _labels: dict[str, np.ndarray]

    @property
    def ident(self) -> str:
        raise NotImplementedError

    def info(self) -> SourceInfo:
        return SourceInfo(
            kind=self.kind, ident=self.ident, channels=self.channels, num_classes=self.num_classes,
            task_type=self.task_type, class_names=self.class_names,
            pools={p: len(f) for p, f in self._files.items()}, image_size=self.native_size, location=self.ident,
        )

    def labels(self, pool: str) -> np.ndarray:
        return self._labels[pool]

    def images(self, pool: str, idx: np.ndarray) -> list[np.ndarray]:
        return self._files[pool].get(idx)

    def file_names(self, pool: str) -> list[str]:
        return self._files[pool].names()
