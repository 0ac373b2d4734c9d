"""CSV manifests: reading the table, resolving image paths and parsing label columns, with row-precise errors."""
from __future__ import annotations

import csv
import math
import os
import warnings
from pathlib import Path

import numpy as np

from mailnet.data.labels import check_labels
from mailnet.data.sources.base import SPLIT_ALIASES
from mailnet.errors import DataError, MailnetWarning

MISSING_VALUES = {"", "nan", "NaN", "NAN", "na", "NA", "null", "None"}
# a class on one row of a column this long is more likely a typo than a class: below it, tiny test tables and
# pilot studies would be warned about classes that are simply small
SINGLETON_MIN_ROWS = 20


class CsvTable:
    """A whole CSV file held as columns of strings; rows are numbered as in the file (header = line 1)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: CSV manifest not found")
        try:
            with open(self.path, newline="", encoding="utf-8-sig") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                rows = [r for r in reader if any(c.strip() for c in r)]
        except (UnicodeDecodeError, csv.Error, OSError) as e:
            raise DataError(f"{self.path}: unreadable CSV ({type(e).__name__}: {e})") from None
        if not header:
            raise DataError(f"{self.path}: empty CSV (no header row)")
        self.header = [h.strip() for h in header]
        for i, r in enumerate(rows):
            if len(r) != len(self.header):
                raise DataError(f"{self.path}: line {i + 2} has {len(r)} fields, the header has {len(self.header)}")
        if not rows:
            raise DataError(f"{self.path}: no data rows (a modality with zero samples)")
        self.rows = [[c.strip() for c in r] for r in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def require(self, *columns: str) -> None:
        missing = [c for c in columns if c not in self.header]
        if missing:
            raise DataError(f"{self.path}: missing column(s) {', '.join(missing)} (columns: {', '.join(self.header)})")

    def column(self, name: str) -> list[str]:
        self.require(name)
        j = self.header.index(name)
        return [r[j] for r in self.rows]

    def paths(self, column: str, image_root: Path) -> list[Path]:
        """Image paths of a column, relative ones resolved against ``image_root``; every file must exist."""
        out: list[Path] = []
        missing: list[tuple[int, str]] = []
        for i, v in enumerate(self.column(column)):
            if v in MISSING_VALUES:
                raise DataError(f"{self.path}: line {i + 2} column {column!r}: empty image path")
            p = Path(v).expanduser()
            p = p if p.is_absolute() else image_root / p
            if not p.is_file():
                missing.append((i + 2, str(p)))
            out.append(p)
        if missing:
            line, p = missing[0]
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DataError(f"{self.path}: line {line} column {column!r}: image file not found: {p}{more}")
        return out

    def pools(self, split_column: str | None) -> np.ndarray:
        """Each row's pool name: its split column value (train/val/test), or ``all`` when there is no column."""
        if split_column is None:
            return np.asarray(["all"] * len(self), dtype=object)
        vals = self.column(split_column)
        out = []
        for i, v in enumerate(vals):
            key = SPLIT_ALIASES.get(v.lower())
            if key is None:
                raise DataError(f"{self.path}: line {i + 2} column {split_column!r}: unknown split {v!r} (train/val/test)")
            out.append(key)
        return np.asarray(out, dtype=object)

    def labels(self, *, column: str | None, columns: list[str] | None, task_type: str | None,
               num_classes: int | None, class_names: list[str] | None) -> tuple[np.ndarray, str, int, tuple[str, ...]]:
        """Parse one task's labels. Returns (labels, task_type, num_classes, class_names).

        A single column holds class indices or class names; ``columns`` (multi-label) holds one 0/1 column per class.
        """
        where = f"{self.path}"
        if columns:
            self.require(*columns)
            mat = np.zeros((len(self), len(columns)), dtype=np.float64)
            for j, c in enumerate(columns):
                for i, v in enumerate(self.column(c)):
                    mat[i, j] = _number(v, where=f"{where}: line {i + 2} column {c!r}")
            names = tuple(class_names or columns)
            labs = check_labels(mat, task_type="multi-label", num_classes=len(columns), where=f"{where}: columns {columns}")
            return labs, "multi-label", len(columns), names
        if column is None:
            raise DataError(f"{where}: no label column given")
        raw = self.column(column)
        for i, v in enumerate(raw):
            if v in MISSING_VALUES:
                raise DataError(f"{where}: line {i + 2} column {column!r}: missing label (empty or NaN)")
        numeric = [_is_number(v) for v in raw]
        if all(numeric):
            vals, k, names = self._class_indices(raw, column, num_classes, class_names)
        else:
            if any(numeric) and not class_names:
                raise self._mixed_error(raw, numeric, column)
            vals, k, names = self._class_names(raw, column, num_classes, class_names)
        self._check_range(vals, raw, k, column)
        if not num_classes and not class_names:
            self._warn_singletons(vals, raw, column)
        tt = task_type or ("binary" if k == 2 else "multi-class")
        if tt == "multi-label":
            raise DataError(f"{where}: multi-label tasks need 'label_columns' (one 0/1 column per class)")
        labs = check_labels(vals, task_type=tt, num_classes=k, where=f"{where}: column {column!r}")
        if len(names) != k:
            names = tuple(str(i) for i in range(k))
        return labs, tt, k, names

    def _class_indices(self, raw: list[str], column: str, num_classes: int | None,
                       class_names: list[str] | None) -> tuple[np.ndarray, int, tuple[str, ...]]:
        """A column of class indices 0, 1, 2, ...; without a declared class count every index up to the largest
        must occur, so a stray 7 is refused instead of making empty classes."""
        where = f"{self.path}"
        vals = np.asarray([_number(v, where=f"{where}: line {i + 2} column {column!r}") for i, v in enumerate(raw)])
        bad = np.flatnonzero(~np.isfinite(vals) | (vals < 0) | (vals != np.round(vals)))
        if len(bad):
            raise DataError(f"{where}: line {bad[0] + 2} column {column!r}: label {raw[bad[0]]!r} is out of range "
                            "(not a class index 0, 1, 2, ...)")
        if not num_classes and not class_names:
            seen = sorted({int(v) for v in vals})  # Python ints: 1e30 must not wrap around as an int64 would
            if len(seen) < seen[-1] + 1:  # 7 among 0..2 would make an 8-class task with 4 empty classes
                present = set(seen)
                missing = [c for c in range(min(seen[-1], 10_000)) if c not in present][:8]  # bounded
                raise DataError(f"{where}: column {column!r}: class indices {seen[:12]} leave out "
                                f"{missing}{' ...' if len(missing) == 8 else ''}, so the class count cannot be "
                                "inferred; set num_classes (or class_names) if those classes exist")
        k = num_classes or (len(class_names) if class_names else int(vals.max()) + 1)
        return vals, k, tuple(class_names or [str(i) for i in range(k)])

    def _class_names(self, raw: list[str], column: str, num_classes: int | None,
                     class_names: list[str] | None) -> tuple[np.ndarray, int, tuple[str, ...]]:
        """A column of class names: the declared ``class_names`` (in their order), else the sorted values."""
        names = tuple(class_names or sorted(set(raw)))
        lookup = {n: i for i, n in enumerate(names)}
        bad = [(i, v) for i, v in enumerate(raw) if v not in lookup]
        if bad:
            i, v = bad[0]
            raise DataError(f"{self.path}: line {i + 2} column {column!r}: label {v!r} is not one of {list(names)}")
        return np.asarray([lookup[v] for v in raw]), num_classes or len(names), names

    def _mixed_error(self, raw: list[str], numeric: list[bool], column: str) -> DataError:
        """Numbers and words in one label column are a typo (``malignant`` among 0/1), not a class of its own: the
        error names the smaller kind, row by row, as the odd one out."""
        nums = [(i, v) for i, (v, n) in enumerate(zip(raw, numeric)) if n]
        words = [(i, v) for i, (v, n) in enumerate(zip(raw, numeric)) if not n]
        odd, usual = (words, nums) if len(words) <= len(nums) else (nums, words)
        odd_kind, usual_kind = ("text", "numeric") if odd is words else ("numeric", "text")
        shown = ", ".join(f"line {i + 2} {v!r}" for i, v in odd[:3])
        more = f" (and {len(odd) - 3} more)" if len(odd) > 3 else ""
        examples = sorted({v for _, v in usual})
        values = ", ".join(examples[:5]) + (", ..." if len(examples) > 5 else "")
        return DataError(f"{self.path}: column {column!r} mixes numeric and text labels: {odd_kind} {shown}{more} "
                         f"among {len(usual)} {usual_kind} labels ({values}); fix the odd value(s), or list the "
                         "classes in class_names if they are all meant")

    def _check_range(self, vals: np.ndarray, raw: list[str], k: int, column: str) -> None:
        """Every label must be a class index below ``k`` (a declared num_classes / class_names may allow fewer
        classes than the column holds); the row is named like the other label errors."""
        bad = np.flatnonzero((vals < 0) | (vals >= k))
        if len(bad):
            i = int(bad[0])
            raise DataError(f"{self.path}: line {i + 2} column {column!r}: label {raw[i]!r} out of range for {k} "
                            f"classes (expected 0..{k - 1})")

    def _warn_singletons(self, vals: np.ndarray, raw: list[str], column: str) -> None:
        """A class inferred from a single row of a long column is most likely a typo (``tumor`` among ``normal`` and
        ``pneumonia``): said, once, with its line; a declared class list means it and silences this."""
        if len(vals) < SINGLETON_MIN_ROWS:
            return
        classes, first, counts = np.unique(vals, return_index=True, return_counts=True)
        lonely = [int(i) for i, n in zip(first, counts) if n == 1]
        if len(classes) > 1 and lonely:
            shown = ", ".join(f"{raw[i]!r} (line {i + 2})" for i in lonely[:3])
            warnings.warn(f"{self.path}: column {column!r}: label(s) {shown} occur on one row only, each making a "
                          "class of one sample; fix them if they are typos, or list the classes in class_names / "
                          "set num_classes to mean them", MailnetWarning, stacklevel=2)

    def check_train_classes(self, labels: np.ndarray, pools: np.ndarray, names: tuple[str, ...], column: str,
                            *, declared: bool) -> None:
        """With a split column, every class inferred from the labels needs a 'train' row: a class seen only in
        val/test (a typo there) would be a head output that is never trained, with an AUC of nan. Declared classes
        (num_classes / class_names) are meant and pass; an ``all`` pool is checked after it is split."""
        if declared or labels.ndim != 1 or not (pools == "train").any():
            return
        trained = set(np.unique(labels[pools == "train"]).tolist())
        for c, name in enumerate(names):
            rows = np.flatnonzero(labels == c)
            if c in trained or not len(rows):
                continue
            i = int(rows[0])
            where = "/".join(p for p in ("val", "test") if (pools[rows] == p).any())
            raise DataError(f"{self.path}: line {i + 2} column {column!r}: class {name!r} has {len(rows)} {where} "
                            "row(s) but no 'train' row, so the model could never learn it; fix the label, add "
                            "training rows, or declare the classes (num_classes / class_names) to keep it")


def _is_number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _number(v: str, *, where: str) -> float:
    try:
        x = float(v)
    except ValueError:
        raise DataError(f"{where}: {v!r} is not a number") from None
    if math.isnan(x) or math.isinf(x):
        raise DataError(f"{where}: NaN or infinite value")
    return x
