"""Paired multimodal data: one CSV row is one subject, with one image column per modality and one label column
(or 0/1 column set) per task. Every modality of a row shares the row's split, so masks are always True."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mailnet.data.image_files import FileImages, probe_all
from mailnet.data.sources.base import ImageSource, SourceInfo
from mailnet.data.table import CsvTable
from mailnet.errors import DataError


@dataclass(frozen=True)
class PairedTaskDef:
    name: str
    column: str | None = None
    columns: tuple[str, ...] | None = None
    task_type: str | None = None
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None


class PairedColumnSource(ImageSource):
    """One image column of a paired CSV, seen as a modality (labels live with the tasks, not here)."""

    def __init__(self, table_path: Path, column: str, files: dict[str, FileImages], channel_counts: set[int],
                 image_root: Path) -> None:
        self.table_path, self.column, self._files, self._image_root = table_path, column, files, image_root
        self.channels, self.native_size = next(iter(files.values())).native()
        self.channel_counts = channel_counts

    def id_root(self) -> Path:
        return self._image_root  # relative paths were read from here: ids then read as the CSV wrote them

    def info(self) -> SourceInfo:
        return SourceInfo(kind="paired-csv", ident=f"{self.table_path}:{self.column}", channels=self.channels,
                          num_classes=0, task_type="none", pools={p: len(f) for p, f in self._files.items()},
                          image_size=self.native_size, location=str(self.table_path))

    def labels(self, pool: str) -> np.ndarray:
        raise DataError(f"{self.table_path}: paired modality {self.column!r} has no labels of its own")

    def images(self, pool: str, idx: np.ndarray) -> list[np.ndarray]:
        return self._files[pool].get(idx)

    def file_names(self, pool: str) -> list[str]:
        return self._files[pool].names()


class PairedCsv:
    """The parsed paired manifest: per-pool row lists, one image source per modality column, labels per task."""

    def __init__(self, csv_path: str | os.PathLike, *, modality_columns: list[str], tasks: list[PairedTaskDef],
                 split_column: str | None = None, image_root: str | os.PathLike | None = None) -> None:
        table = CsvTable(csv_path)
        self.path = table.path
        table.require(*modality_columns)
        for t in tasks:
            table.require(*([t.column] if t.column else list(t.columns or ())))
        if split_column is None and "split" in table.header:
            split_column = "split"
        root = Path(image_root).expanduser() if image_root else table.path.parent
        pools = table.pools(split_column)
        self.pool_rows = {p: np.flatnonzero(pools == p) for p in ("train", "val", "test", "all") if (pools == p).any()}
        if split_column is not None and "train" not in self.pool_rows:
            raise DataError(f"{self.path}: column {split_column!r} has no 'train' rows")
        self.sources: list[PairedColumnSource] = []
        for col in modality_columns:
            paths = table.paths(col, root)
            files = {pool: FileImages([paths[i] for i in rows]) for pool, rows in self.pool_rows.items()}
            self.sources.append(PairedColumnSource(self.path, col, files, probe_all(paths), root))
        self.task_info: list[tuple[str, str, int, tuple[str, ...]]] = []
        self._labels: list[np.ndarray] = []
        for t in tasks:
            labs, tt, k, names = table.labels(column=t.column, columns=list(t.columns) if t.columns else None,
                                              task_type=t.task_type, num_classes=t.num_classes,
                                              class_names=list(t.class_names) if t.class_names else None)
            if t.column:
                table.check_train_classes(labs, pools, names, t.column, declared=bool(t.num_classes or t.class_names))
            self.task_info.append((t.name, tt, k, names))
            self._labels.append(labs)

    def pools(self) -> dict[str, int]:
        return {p: len(r) for p, r in self.pool_rows.items()}

    def task_labels(self, t: int, pool: str) -> np.ndarray:
        """Labels of task ``t`` for the rows of ``pool``, in pool order."""
        return self._labels[t][self.pool_rows[pool]]
