"""Per-task metrics. ACC and AUC follow ``medmnist.Evaluator`` exactly (binary: the last column's probability
thresholded at 0.5 and scored for AUC; multi-class/ordinal: argmax, one-vs-rest AUC averaged over classes;
multi-label: per-label mean), so our numbers are comparable with the official MedMNIST benchmark."""
from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

from mailnet.data.types import TaskSpec


@contextmanager
def quiet_sklearn() -> Iterator[None]:
    """Silence sklearn's multi-line warnings about splits that lack a class (``Only one class is present in
    y_true``, ``y_pred contains classes not in y_true``, ``A single label was found``): the value they warn about
    (an AUC of nan) is in the results, and the metrics table explains it once in a footnote instead of once per call
    and epoch. Only inside our metric calls: other code keeps sklearn's warnings."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UndefinedMetricWarning)
        for text in ("y_pred contains classes not in y_true", "A single label was found in 'y_true' and 'y_pred'"):
            warnings.filterwarnings("ignore", message=text, category=UserWarning)
        yield


def predicted_class(probs: np.ndarray, task_type: str) -> np.ndarray:
    if task_type == "binary":
        return (probs[:, -1] > 0.5).astype(np.int64)
    if task_type == "multi-label":
        return (probs > 0.5).astype(np.int64)
    return probs.argmax(axis=1)


def accuracy(labels: np.ndarray, probs: np.ndarray, task_type: str) -> float:
    pred = predicted_class(probs, task_type)
    if task_type == "multi-label":
        return float(np.mean([accuracy_score(labels[:, j], pred[:, j]) for j in range(labels.shape[1])]))
    return float(accuracy_score(labels, pred))


def auc(labels: np.ndarray, probs: np.ndarray, task_type: str) -> float:
    """NaN when a class is absent from the labels (AUC undefined), instead of raising mid-run."""
    try:
        if task_type == "binary":
            return float(roc_auc_score(labels, probs[:, -1]))
        if task_type == "multi-label":
            return float(np.mean([roc_auc_score(labels[:, j], probs[:, j]) for j in range(labels.shape[1])]))
        return float(np.mean([roc_auc_score(labels == k, probs[:, k]) for k in range(probs.shape[1])]))
    except ValueError:
        return float("nan")


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, task_type: str, bins: int = 15) -> float:
    """Top-label ECE with equal-width bins (per label, averaged, for multi-label)."""
    if task_type == "multi-label":
        return float(np.mean([
            expected_calibration_error(labels[:, j], np.stack([1 - probs[:, j], probs[:, j]], 1), "binary", bins)
            for j in range(labels.shape[1])
        ]))
    pred = predicted_class(probs, task_type)
    conf = probs[np.arange(len(pred)), pred]
    correct = (pred == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def auc_note(labels: np.ndarray, probs: np.ndarray, task: TaskSpec) -> str:
    """Why the AUC of these labels is undefined, worded to be followed by "in <task>'s <split> split"."""
    if len(labels) == 0:
        return "no samples"
    if not np.isfinite(probs).all():
        return "non-finite scores"
    if task.task_type == "multi-label":
        names = _names(task, labels.shape[1])
        flat = [names[j] for j in range(labels.shape[1]) if len(np.unique(labels[:, j])) < 2]
        return f"label(s) {', '.join(map(repr, flat))} all 0 or all 1" if flat else "undefined"
    present = np.unique(labels)
    if len(present) < 2:
        return "only one class present"
    names = _names(task, probs.shape[1])
    absent = [names[k] for k in range(probs.shape[1]) if k not in present]
    return f"no sample of class(es) {', '.join(map(repr, absent))}" if absent else "undefined"


def _names(task: TaskSpec, k: int) -> list[str]:
    return list(task.class_names) if len(task.class_names) == k else [str(i) for i in range(k)]


def task_metrics(labels: np.ndarray, probs: np.ndarray, task: TaskSpec) -> dict[str, float | int | str]:
    """ACC, AUC, macro F1, balanced accuracy and ECE of one task on one split; ``auc_note`` says why when the AUC
    is undefined (nan), e.g. a split with one class only."""
    with quiet_sklearn():
        out = _task_metrics(labels, probs, task)
    if np.isnan(out["auc"]):
        out["auc_note"] = auc_note(labels, probs, task)
    return out


def _task_metrics(labels: np.ndarray, probs: np.ndarray, task: TaskSpec) -> dict[str, float | int | str]:
    """The metrics themselves; sklearn's warnings are the caller's to silence."""
    tt = task.task_type
    pred = predicted_class(probs, tt)
    # macro F1 over the classes that occur (in the labels or the predictions): a class absent from both, common in a
    # subset, says nothing about the model and would otherwise count as an F1 of 0
    if tt == "multi-label":
        f1 = float(f1_score(labels, pred, average="macro", zero_division=np.nan))
        bal = float(np.mean([balanced_accuracy_score(labels[:, j], pred[:, j]) for j in range(labels.shape[1])]))
    else:
        f1 = float(f1_score(labels, pred, average="macro", zero_division=0))
        bal = float(balanced_accuracy_score(labels, pred))
    return {
        "acc": accuracy(labels, probs, tt),
        "auc": auc(labels, probs, tt),
        "f1": f1,
        "bal_acc": bal,
        "ece": expected_calibration_error(labels, probs, tt),
        "n": int(len(labels)),
    }
