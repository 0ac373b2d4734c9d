"""The rows an attack is run on: a fixed, seeded random subset of one evaluation pass.

The subset depends only on the data (the composition: its modalities, in order), the split and the seed, never on
the model, so every model trained on one composition is attacked on the same samples. It is chosen per task: up to
``n`` of the rows that count for that task (its mask is True), or all of them when fewer; a row picked for one task
still carries the other tasks' labels but counts for them only if it was picked for them too. The draws of the
tasks share one generator in task order, so the same dataset in another composition (e.g. breast after pneumonia,
or alone) may be attacked on other samples: compare robust accuracies across compositions as estimates on
different random subsets, not sample for sample.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

from mailnet.errors import DataError


@dataclass
class AttackRows:
    """Stacked batch rows in the batch contract's layout (``mailnet.data.types``)."""

    images: list[torch.Tensor]
    labels: list[torch.Tensor]
    masks: list[torch.Tensor]
    index: list[torch.Tensor]

    def __len__(self) -> int:
        return int(self.images[0].shape[0])

    def take(self, rows: torch.Tensor | slice) -> "AttackRows":
        return AttackRows(*[[t[rows] for t in ts] for ts in (self.images, self.labels, self.masks, self.index)])

    def to(self, device: str | torch.device) -> "AttackRows":
        return AttackRows(*[[t.to(device) for t in ts] for ts in (self.images, self.labels, self.masks, self.index)])

    def counted(self) -> list[int]:
        """How many rows count for each task."""
        return [int(m.sum()) for m in self.masks]

    def chunks(self, batch_size: int) -> Iterable["AttackRows"]:
        for start in range(0, len(self), batch_size):
            yield self.take(slice(start, start + batch_size))


def stack_batches(batches: Iterable[dict]) -> AttackRows:
    """Concatenate a pass of batch dicts into one ``AttackRows`` (on the CPU)."""
    parts: dict[str, list[list[torch.Tensor]]] = {"images": [], "labels": [], "mask": [], "index": []}
    for batch in batches:
        for key in parts:
            if key not in batch:
                raise DataError(f"batch has no {key!r} entry (see mailnet.data.types for the batch contract)")
            parts[key].append([t.detach().cpu() for t in batch[key]])
    if not parts["images"]:
        raise DataError("the split produced no batches to attack")
    cat = {k: [torch.cat(col) for col in zip(*v)] for k, v in parts.items()}
    return AttackRows(cat["images"], cat["labels"], [m.bool() for m in cat["mask"]], cat["index"])


def select_subset(rows: AttackRows, n: int | None, seed: int = 0) -> AttackRows:
    """Up to ``n`` counted rows per task, drawn with ``seed`` (``None``/0: every row); kept in pass order.

    The draw is over the task's sample indices sorted, so it picks the same samples whatever order the pass
    visited them in (and whatever partners they were paired with)."""
    if not n:
        return rows
    rng = np.random.RandomState(seed)
    keep_for_task = []
    for mask, index in zip(rows.masks, rows.index):
        counted = np.flatnonzero(mask.numpy())
        counted = counted[np.argsort(index.numpy()[counted], kind="stable")]  # by sample index, not row order
        chosen = counted if len(counted) <= n else rng.choice(counted, size=n, replace=False)
        keep_for_task.append(np.sort(chosen))
    union = np.unique(np.concatenate(keep_for_task)) if keep_for_task else np.array([], dtype=np.int64)
    sub = rows.take(torch.as_tensor(union, dtype=torch.long))
    masks = []
    for chosen in keep_for_task:
        m = torch.zeros(len(union), dtype=torch.bool)
        m[torch.as_tensor(np.searchsorted(union, chosen), dtype=torch.long)] = True
        masks.append(m)
    sub.masks = masks
    return sub


def subset_ids(rows: AttackRows) -> list[list[int]]:
    """Per task, the split indices of the counted rows (recorded so runs can be checked to share a subset)."""
    return [idx[m].tolist() for idx, m in zip(rows.index, rows.masks)]


def rows_from_tensors(images: Sequence[torch.Tensor], labels: Sequence[torch.Tensor],
                      masks: Sequence[torch.Tensor] | None = None) -> AttackRows:
    """Build rows directly (tests, notebooks): every row counts for every task unless masks say otherwise."""
    n = images[0].shape[0]
    masks = [torch.ones(n, dtype=torch.bool) for _ in labels] if masks is None else [m.bool() for m in masks]
    return AttackRows(list(images), list(labels), list(masks), [torch.arange(n) for _ in labels])
