"""Class weights for the training loss (``train.class_weights``): medical labels are rarely balanced, and a head
that is rewarded for the majority answer learns it (BreastMNIST: 73% normal or benign, so a constant answer
scores 0.73).

``balanced`` weighs class c of a task by n / (K * n_c) over that task's training labels (scikit-learn's
``class_weight="balanced"``), so every class contributes equally to the loss; for a multi-label task it sets
BCE's ``pos_weight`` of label j to n_neg_j / n_pos_j. A list gives the weights outright. Only the training loss is
weighted: validation and test losses stay the plain cross-entropy, comparable between runs with and without.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from mailnet.data.types import TaskSpec
from mailnet.errors import ConfigError

KEY = "train.class_weights"


def check_setting(value: Any) -> None:
    """The shape of the setting, before any data is read: null, ``balanced``, or one entry per task (null,
    ``balanced`` or a list of positive numbers)."""
    if value is None or value == "balanced":
        return
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{KEY}: must be null, 'balanced', or a list with one entry per task (null, 'balanced' or "
                          f"a list of positive weights, one per class), got {value!r}")
    for t, entry in enumerate(value):
        if entry is None or entry == "balanced":
            continue
        if not isinstance(entry, list) or not entry or not all(_positive(w) for w in entry):
            raise ConfigError(f"{KEY}[{t}]: must be null, 'balanced' or a list of positive numbers (one per class), "
                              f"got {entry!r}")


def _positive(w: Any) -> bool:
    return isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w > 0


def resolve(value: Any, tasks: list[TaskSpec], train_labels: list[np.ndarray]) -> list[torch.Tensor | None]:
    """One weight vector per task (None: unweighted), from the setting and each task's training labels."""
    check_setting(value)
    if value is None:
        return [None] * len(tasks)
    entries = [value] * len(tasks) if value == "balanced" else value
    if len(entries) != len(tasks):
        raise ConfigError(f"{KEY}: {len(entries)} entries for {len(tasks)} tasks "
                          f"({', '.join(t.name for t in tasks)})")
    out: list[torch.Tensor | None] = []
    for t, (entry, task, labels) in enumerate(zip(entries, tasks, train_labels)):
        if entry is None:
            out.append(None)
        elif entry == "balanced":
            out.append(_balanced(task, np.asarray(labels)))
        else:
            if len(entry) != task.num_classes:
                what = "labels" if task.task_type == "multi-label" else "classes"
                raise ConfigError(f"{KEY}[{t}]: {len(entry)} weights for task {task.name!r}, which has "
                                  f"{task.num_classes} {what}")
            out.append(torch.tensor([float(w) for w in entry], dtype=torch.float32))
    return out


def _balanced(task: TaskSpec, labels: np.ndarray) -> torch.Tensor:
    """A class absent from the training labels gets weight 1: it never weighs a training row."""
    if task.task_type == "multi-label":
        pos = labels.reshape(len(labels), -1).sum(axis=0).astype(np.float64)
        neg = len(labels) - pos
        # a label positive in every row (or in none) has nothing to balance: 1, never 0 (which would drop it)
        w = np.where((pos > 0) & (neg > 0), neg / np.maximum(pos, 1), 1.0)
    else:
        counts = np.bincount(labels.reshape(-1).astype(np.int64), minlength=task.num_classes).astype(np.float64)
        w = np.where(counts > 0, counts.sum() / (task.num_classes * np.maximum(counts, 1)), 1.0)
    return torch.tensor(w, dtype=torch.float32)


def describe(weights: list[torch.Tensor | None], tasks: list[TaskSpec]) -> str:
    """One line for the log, e.g. ``class weights (training loss): breast [1.85, 0.685]``."""
    parts = [f"{task.name} [{', '.join(f'{v:.3g}' for v in w.tolist())}]" for w, task in zip(weights, tasks)
             if w is not None]
    return "class weights (training loss): " + "; ".join(parts)


def as_record(weights: list[torch.Tensor | None], tasks: list[TaskSpec]) -> dict[str, list[float]]:
    return {task.name: [float(v) for v in w.tolist()] for w, task in zip(weights, tasks) if w is not None}
