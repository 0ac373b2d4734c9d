"""How a prediction is written down, the same in a run's ``predictions_test.csv`` and in ``mailnet predict``'s
output: the predicted class as the metrics decide it, and one probability column per class, named after it."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from mailnet.data.types import TaskSpec


def class_names(task: TaskSpec) -> list[str] | None:
    """A task's class names when they say more than the indices (None: absent, only "0", "1", ..., or repeated)."""
    names = [str(n) for n in task.class_names]
    if len(names) != task.num_classes or len(set(names)) != len(names) or names == [str(k) for k in range(len(names))]:
        return None
    return names


def class_columns(task: TaskSpec) -> list[str]:
    """A task's probability column names: ``p_<class name>`` (``p_normal``), or ``p0, p1, ...`` without names."""
    names = class_names(task)
    return [f"p_{n}" for n in names] if names else [f"p{k}" for k in range(task.num_classes)]


def probability_columns(tasks: Sequence[TaskSpec]) -> list[str]:
    """Every task's columns, in first-seen order: one file holds all tasks, a row fills its own task's columns
    and leaves the others empty (tasks naming a class alike share its column)."""
    return list(dict.fromkeys(c for task in tasks for c in class_columns(task)))


def probability_cells(probs: Sequence[float], task: TaskSpec, columns: list[str]) -> list[str]:
    """One row's cells under ``columns``: this task's probabilities, empty for other tasks' classes."""
    mine = dict(zip(class_columns(task), probs))
    return [f"{mine[c]:.6f}" if c in mine else "" for c in columns]


def predicted(probs: Any, task: TaskSpec) -> list[tuple[str, str]]:
    """The ``pred`` and ``pred_name`` cells of each row of ``probs`` (n, K), decided as the metrics decide
    (``metrics.predicted_class``: binary, the last class's probability > 0.5; multi-class/ordinal, argmax): the
    class index and its name. Multi-label: the 0/1 row thresholded at 0.5, space-separated like its label, and the
    names of the positive classes joined by ``;``. Names are empty when the task does not name its classes."""
    import numpy as np

    from mailnet.engine.metrics import predicted_class

    probs = np.asarray(probs, dtype=np.float64).reshape(-1, task.num_classes)
    names = class_names(task)
    out = []
    for pred in predicted_class(probs, task.task_type):
        if np.ndim(pred):
            out.append((" ".join(str(int(v)) for v in pred), ";".join(names[j] for j in np.flatnonzero(pred))
                        if names else ""))
        else:
            out.append((str(int(pred)), names[int(pred)] if names else ""))
    return out
