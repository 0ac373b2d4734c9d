"""A CSV manifest as a single-modality source: one image path column plus a label column (or one 0/1 column
per class for multi-label), an optional split column. Relative paths resolve against the CSV's folder (or ``image_root``)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mailnet.data.image_files import FileImages, probe_all
from mailnet.data.sources.base import FileListSource
from mailnet.data.table import CsvTable
from mailnet.errors import DataError


class CsvSource(FileListSource):
    """Images listed in a CSV; pools come from ``split_column`` (train/val/test) or are one ``all`` pool."""

    kind = "csv"

    def __init__(self, csv_path: str | os.PathLike, *, path_column: str = "path", label_column: str | None = "label",
                 label_columns: list[str] | None = None, split_column: str | None = None,
                 image_root: str | os.PathLike | None = None, task_type: str | None = None,
                 num_classes: int | None = None, class_names: list[str] | None = None) -> None:
        table = CsvTable(csv_path)
        self.csv_path = table.path
        if split_column is None and "split" in table.header:
            split_column = "split"
        self._image_root = Path(image_root).expanduser() if image_root else table.path.parent
        paths = table.paths(path_column, self._image_root)
        labs, self.task_type, self.num_classes, self.class_names = table.labels(
            column=None if label_columns else label_column, columns=label_columns, task_type=task_type,
            num_classes=num_classes, class_names=class_names)
        pools = table.pools(split_column)
        if not label_columns:
            table.check_train_classes(labs, pools, self.class_names, label_column,
                                      declared=bool(num_classes or class_names))
        self._files: dict[str, FileImages] = {}
        self._labels: dict[str, np.ndarray] = {}
        for pool in ("train", "val", "test", "all"):
            sel = np.flatnonzero(pools == pool)
            if len(sel):
                self._files[pool] = FileImages([paths[i] for i in sel])
                self._labels[pool] = labs[sel]
        if split_column is not None and "train" not in self._files:
            raise DataError(f"{self.csv_path}: column {split_column!r} has no 'train' rows")
        self.channels, self.native_size = next(iter(self._files.values())).native()
        self.channel_counts = probe_all([p for f in self._files.values() for p in f.paths])

    @property
    def ident(self) -> str:
        return str(self.csv_path)

    def id_root(self) -> Path:
        return self._image_root  # where the CSV's relative paths are read from, so ids read as the CSV wrote them
