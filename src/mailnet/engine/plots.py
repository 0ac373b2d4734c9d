"""PNG plots of a finished run: loss and metric curves, and per task a confusion matrix and ROC curves."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mailnet.engine import rundir
from mailnet.engine.metrics import predicted_class


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_run(run: Path, history: list[dict[str, Any]], tasks, preds, loss_weight_sum: float = 1.0,
             class_weighted: bool = False) -> None:
    """``loss_weight_sum``: the training loss is the weighted *sum* of the task losses and the validation loss their
    weighted *mean*; the validation curve is scaled by the weights' sum so that both are drawn on one scale.
    ``class_weighted``: the training loss weighs classes (``train.class_weights``) and the validation loss does
    not, so the two curves are not on one scale; the legend says so."""
    out = rundir.plots_dir(run)
    out.mkdir(parents=True, exist_ok=True)
    plt = _plt()
    if history:
        ep = [r["epoch"] for r in history]
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        axes[0].plot(ep, [r["train_loss"] for r in history], label="train (class-weighted)" if class_weighted
                     else "train")
        axes[0].plot(ep, [r["val_loss"] * loss_weight_sum for r in history], label="val")
        axes[0].set(xlabel="epoch", ylabel="loss (weighted sum over tasks)", title="loss")
        axes[0].legend()
        for t in tasks:
            axes[1].plot(ep, [r[f"val_{t.name}_acc"] for r in history], label=f"{t.name} ACC")
            axes[1].plot(ep, [r[f"val_{t.name}_auc"] for r in history], "--", label=f"{t.name} AUC")
        axes[1].set(xlabel="epoch", title="validation metrics", ylim=(0, 1))
        axes[1].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "curves.png", dpi=100)
        plt.close(fig)
    for t, task in enumerate(tasks):
        labels, probs = preds.labels[t], preds.probs[t]
        if task.task_type != "multi-label" and len(labels):
            _confusion(plt, out / f"confusion_{task.name}.png", labels, predicted_class(probs, task.task_type), task)
        if len(labels):
            _roc(plt, out / f"roc_{task.name}.png", labels, probs, task)


def _confusion(plt, path: Path, labels: np.ndarray, pred: np.ndarray, task) -> None:
    from sklearn.metrics import confusion_matrix

    k = task.num_classes
    cm = confusion_matrix(labels, pred, labels=list(range(k)))
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * k, 1.0 + 0.6 * k))
    ax.imshow(cm, cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8)
    names = list(task.class_names) or [str(i) for i in range(k)]
    ax.set_xticks(range(k), [n[:12] for n in names], rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(k), [n[:12] for n in names], fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=f"{task.name} (test)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _roc(plt, path: Path, labels: np.ndarray, probs: np.ndarray, task) -> None:
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    if task.task_type == "binary":
        curves = [("positive", labels == 1, probs[:, -1])]
    elif task.task_type == "multi-label":
        curves = [(str(j), labels[:, j] == 1, probs[:, j]) for j in range(probs.shape[1])]
    else:
        names = list(task.class_names) or [str(k) for k in range(probs.shape[1])]
        curves = [(names[k], labels == k, probs[:, k]) for k in range(probs.shape[1])]
    drawn = 0
    for name, y, s in curves:
        if 0 < y.sum() < len(y):  # a curve needs both classes present
            fpr, tpr, _ = roc_curve(y, s)
            ax.plot(fpr, tpr, label=str(name)[:16])
            drawn += 1
    ax.plot([0, 1], [0, 1], ":", color="gray")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC {task.name} (test)")
    if drawn:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no curve: one class only", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
