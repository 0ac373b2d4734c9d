"""Running a model over a split and scoring it: per-task metrics on every modality's full split, K-draw
statistics for models that are random at inference, and partner sensitivity for unpaired data."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mailnet.data.types import TaskSpec
from mailnet.engine.distributed import DistInfo, all_gather_objects
from mailnet.engine.metrics import predicted_class, task_metrics
from mailnet.engine.randomness import is_stochastic, reseed
from mailnet.errors import MailnetError


@dataclass
class SplitPredictions:
    """Per task: labels and probabilities of the rows that count (mask True), ordered by sample index."""

    labels: list[np.ndarray]
    probs: list[np.ndarray]
    indices: list[np.ndarray]
    loss: float  # mean of the per-task mean losses (weighted like training)


def task_loss(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, task: TaskSpec,
              reduction: str = "mean", class_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy (BCE for multi-label) over the rows that count; 0 when none do. ``class_weight``
    (``train.class_weights``): per class, the mean is then weighted as torch's ``cross_entropy(weight=...)``
    weighs it (divided by the rows' summed weights); per label of a multi-label task, BCE's ``pos_weight``."""
    row_weight = mask.to(logits.dtype)
    if task.task_type == "multi-label":
        per_row = F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none",
                                                     pos_weight=class_weight).mean(dim=1)
    else:
        per_row = F.cross_entropy(logits, labels, reduction="none")
        if class_weight is not None:
            row_weight = row_weight * class_weight[labels]
    per_row = per_row * row_weight
    if reduction == "sum":
        return per_row.sum()
    return per_row.sum() / row_weight.sum().clamp(min=1e-12)  # no row counts: 0 (without a device sync)


def check_outputs(logits: Any, tasks: list[TaskSpec], batch: int) -> None:
    """A model must return one (B, K_t) logits tensor per task (see ``mailnet.models.registry``); a custom model
    that returns one bare tensor, or fewer heads than tasks, would otherwise train some tasks silently or fail deep
    inside a loss. Shape checks only: nothing is synchronised with the device."""
    from mailnet.errors import ModelError

    if not isinstance(logits, (list, tuple)) or not all(isinstance(t, torch.Tensor) for t in logits):
        raise ModelError(f"the model returned {type(logits).__name__}; it must return a list of logits tensors, one "
                         f"(batch, classes) tensor per task ({len(tasks)} here: {', '.join(t.name for t in tasks)})")
    if len(logits) != len(tasks):
        raise ModelError(f"the model returned {len(logits)} logits tensor(s) for {len(tasks)} tasks "
                         f"({', '.join(t.name for t in tasks)}); build it with num_classes of length {len(tasks)}")
    for lg, task in zip(logits, tasks):
        if tuple(lg.shape) != (batch, task.num_classes):
            raise ModelError(f"task {task.name}: the model returned logits of shape {tuple(lg.shape)}, expected "
                             f"({batch}, {task.num_classes}) for a batch of {batch}")


def probabilities(logits: torch.Tensor, task: TaskSpec) -> torch.Tensor:
    return torch.sigmoid(logits) if task.task_type == "multi-label" else torch.softmax(logits, dim=1)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: [t.to(device, non_blocking=True) for t in v] for k, v in batch.items()}


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable[dict], tasks: list[TaskSpec], device: torch.device,
            loss_weights: list[float] | None = None, dist_info: DistInfo | None = None) -> SplitPredictions:
    """Under DDP each rank scores its shard of the pass and the pieces are gathered (padding rows are masked)."""
    model.eval()
    T = len(tasks)
    weights = loss_weights or [1.0] * T
    probs: list[list[np.ndarray]] = [[] for _ in range(T)]
    labels: list[list[np.ndarray]] = [[] for _ in range(T)]
    index: list[list[np.ndarray]] = [[] for _ in range(T)]
    loss_sum = [0.0] * T
    count = [0] * T
    for i, batch in enumerate(loader):
        batch = to_device(batch, device)
        logits = model(batch["images"])
        if i == 0:
            check_outputs(logits, tasks, batch["images"][0].shape[0])
        for t, task in enumerate(tasks):
            m = batch["mask"][t]
            loss_sum[t] += float(task_loss(logits[t].float(), batch["labels"][t], m, task, reduction="sum"))
            count[t] += int(m.sum())
            keep = m.cpu().numpy().astype(bool)
            probs[t].append(probabilities(logits[t].float(), task).cpu().numpy()[keep])
            labels[t].append(batch["labels"][t].cpu().numpy()[keep])
            index[t].append(batch["index"][t].cpu().numpy()[keep])
    if dist_info is not None and dist_info.enabled:
        gathered = all_gather_objects((probs, labels, index, loss_sum, count), dist_info)
        probs = [sum((g[0][t] for g in gathered), []) for t in range(T)]
        labels = [sum((g[1][t] for g in gathered), []) for t in range(T)]
        index = [sum((g[2][t] for g in gathered), []) for t in range(T)]
        loss_sum = [sum(g[3][t] for g in gathered) for t in range(T)]
        count = [sum(g[4][t] for g in gathered) for t in range(T)]
    out_p, out_l, out_i = [], [], []
    for t in range(T):
        idx = np.concatenate(index[t]) if index[t] else np.zeros(0, np.int64)
        order = np.argsort(idx, kind="stable")
        out_i.append(idx[order])
        out_p.append(np.concatenate(probs[t])[order] if probs[t] else np.zeros((0, tasks[t].num_classes)))
        out_l.append(np.concatenate(labels[t])[order] if labels[t] else np.zeros(0, np.int64))
    loss = sum(w * s / max(c, 1) for w, s, c in zip(weights, loss_sum, count)) / max(sum(weights), 1e-12)
    return SplitPredictions(out_l, out_p, out_i, float(loss))


def score(preds: SplitPredictions, tasks: list[TaskSpec]) -> dict[str, Any]:
    per_task = {task.name: task_metrics(l, p, task) for task, l, p in zip(tasks, preds.labels, preds.probs)}
    return {"loss": preds.loss, "tasks": per_task, **_means(per_task)}


def _mean_std(values: list[float]) -> dict[str, float]:
    """Mean and std over the draws that have the value (both nan when none has, without numpy's warning)."""
    kept = [v for v in values if not np.isnan(v)]
    if not kept:
        return {"mean": float("nan"), "std": float("nan")}
    return {"mean": float(np.mean(kept)), "std": float(np.std(kept))}


def _means(per_task: dict[str, dict[str, float]]) -> dict[str, float]:
    """Means over the tasks that have the metric (nan when none has: an AUC on a split with one class)."""
    keys = ("acc", "auc", "f1", "bal_acc", "ece")
    out = {}
    for k in keys:
        values = [m[k] for m in per_task.values() if not np.isnan(m[k])]
        out[f"mean_{k}"] = float(np.mean(values)) if values else float("nan")
    return out


def evaluate(model: nn.Module, data: Any, split: str, device: torch.device, *, batch_size: int = 256,
             mc_samples: int = 8, partner_draws: int = 3, seed: int = 0,
             loss_weights: list[float] | None = None, dist_info: DistInfo | None = None,
             stochastic: bool | None = None) -> dict[str, Any]:
    """Full evaluation of one split.

    Deterministic models: one pass. Random models (MC dropout, Robust-MAIL): ``mc_samples`` seeded draws; the
    result's top level holds the metrics of the draw-averaged probabilities, ``draws`` the mean and std of the
    per-draw metrics. Unpaired data with several modalities: ``partner_sensitivity`` per task, the share of
    samples whose predicted class changes when their (unrelated) partner images are re-drawn.
    """
    if mc_samples < 1 or batch_size < 1:
        raise MailnetError(f"evaluate: mc_samples ({mc_samples}) and batch_size ({batch_size}) must be >= 1")
    tasks = data.tasks
    info = dist_info or DistInfo()

    def loader(partner_seed: int | None = None, keep_modality: int | None = None):
        return data.loader(split, batch_size, shuffle=False, partner_seed=partner_seed, keep_modality=keep_modality,
                           rank=info.rank, world_size=info.world_size)

    if stochastic is None:  # decided by trying, unless the caller already knows
        first = next(iter(loader()))
        stochastic = is_stochastic(model, [x.to(device) for x in first["images"]])
    draws = mc_samples if stochastic else 1
    runs = []
    for k in range(draws):
        reseed(model, seed + k)
        runs.append(predict(model, loader(), tasks, device, loss_weights, info))
    avg = SplitPredictions(runs[0].labels, [np.mean([r.probs[t] for r in runs], 0) for t in range(len(tasks))],
                           runs[0].indices, float(np.mean([r.loss for r in runs])))
    result = score(avg, tasks)
    result["split"] = split
    result["stochastic"] = stochastic
    result["draws"] = draws
    if draws > 1:
        per_draw = [score(r, tasks) for r in runs]
        result["draw_stats"] = {
            t.name: {k: _mean_std([d["tasks"][t.name][k] for d in per_draw])
                     for k in ("acc", "auc", "f1", "bal_acc", "ece")}
            for t in tasks
        }
    if not data.paired and len(data.modalities) > 1 and partner_draws > 1:
        result["partner_sensitivity"] = partner_sensitivity(model, loader, tasks, device, partner_draws, seed, info)
    result["_predictions"] = avg
    return result


def partner_sensitivity(model: nn.Module, loader, tasks: list[TaskSpec], device: torch.device,
                        draws: int, seed: int, dist_info: DistInfo | None = None) -> dict[str, float]:
    """Share of each task's samples whose predicted class is not the same under every partner re-draw.

    Only the partners may change: the task's own modality keeps its rows (``keep_modality``) and the model is
    reseeded alike before every pass, so a random model (MC dropout, Robust-MAIL) applies the same noise to the same
    sample each time; re-drawing every modality's rows would move each sample to another row, under other noise,
    and count the model's own randomness as partner effects."""
    out = {}
    for t, task in enumerate(tasks):
        keep = t if task.modality is None else task.modality
        preds = []
        for p in range(draws):
            reseed(model, seed)
            sp = predict(model, loader(partner_seed=seed + 1000 + p, keep_modality=keep), tasks, device,
                         dist_info=dist_info)
            preds.append(predicted_class(sp.probs[t], task.task_type).reshape(len(sp.probs[t]), -1))
        stack = np.stack(preds)  # draws x N x (1 or labels)
        changed = (stack != stack[0:1]).any(axis=(0, 2))
        out[task.name] = float(changed.mean()) if changed.size else float("nan")
    return out
