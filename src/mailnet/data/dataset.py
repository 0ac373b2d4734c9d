"""A map-style dataset whose items are whole batches: ``ds[list_of_rows] -> batch dict``.

Converting a batch of uint8 rows in one tensor operation is far faster than per-sample conversion plus
collation, and it lets ``DataLoader(batch_size=None, sampler=BatchSampler(...))`` run it in worker processes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from mailnet.data.augment import REFERENCE_EQUALIZE, AugOp, apply_ops
from mailnet.data.images import prepare
from mailnet.data.plan import AUG_PURPOSE, Plan, rng_for
from mailnet.data.sources.base import ImageSource
from mailnet.data.types import ModalitySpec, TaskSpec


@dataclass
class ModalityRuntime:
    """A modality as the loaders use it: its source, the pool and indices of each split, and its transforms."""

    spec: ModalitySpec
    source: ImageSource
    augment: tuple[AugOp, ...]
    splits: dict[str, tuple[str, np.ndarray]]  # split -> (source pool, indices into the pool)
    source_kind: str

    def split_size(self, split: str) -> int:
        return int(len(self.splits[split][1]))

    def sample_ids(self, split: str) -> list[str]:
        """Every sample of ``split`` in split order (a batch's ``index`` points into it), as its source names it."""
        pool, idx = self.splits[split]
        return self.source.sample_ids(pool, idx)

    def undecodable(self, split: str) -> tuple[int, list[str]]:
        """How many image files ``split`` reads, and the error of each one whose pixels do not decode (arrays: 0)."""
        pool, idx = self.splits[split]
        files = self.source.pool_files(pool)
        return (0, []) if files is None else (len(idx), files.undecodable(idx))

    def load(self, split: str, positions: np.ndarray) -> torch.Tensor:
        """Images at ``positions`` of ``split``, converted to (n, C, H, W) floats (no augmentation)."""
        pool, idx = self.splits[split]
        return prepare(self.source.images(pool, idx[positions]), channels=self.spec.in_chans, size=self.spec.img_size)


@dataclass
class TaskRuntime:
    spec: TaskSpec
    labels: dict[str, np.ndarray]  # split -> labels aligned with split positions


class PlanDataset(Dataset):
    """Serves the rows of one (possibly sharded) plan; augmentation is seeded per row from (seed, epoch, m, row)."""

    def __init__(self, modalities: list[ModalityRuntime], tasks: list[TaskRuntime], plan: Plan, split: str, *,
                 seed: int, epoch: int, train: bool) -> None:
        self.modalities, self.tasks, self.plan, self.split = modalities, tasks, plan, split
        self.seed, self.epoch, self.train = seed, epoch, train

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, rows) -> dict:
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        images = []
        for m, mod in enumerate(self.modalities):
            x = mod.load(self.split, self.plan.mod_pos[m, rows])
            if self.train:
                x = self._augment(x, m, mod, rows)
            images.append(x)
        labels, mask, index = [], [], []
        for t, task in enumerate(self.tasks):
            pos = self.plan.task_pos[t, rows]
            lab = torch.from_numpy(task.labels[self.split][pos].copy())
            labels.append(lab.float() if task.spec.task_type == "multi-label" else lab.long())
            mask.append(torch.from_numpy(self.plan.task_mask[t, rows].copy()))
            index.append(torch.from_numpy(pos.copy()))
        return {"images": images, "labels": labels, "mask": mask, "index": index}

    def _augment(self, x: torch.Tensor, m: int, mod: ModalityRuntime, rows: np.ndarray) -> torch.Tensor:
        """Equalisation copies get the reference augmentation, then every row the modality's own list; each
        row's random numbers come from its own generator, so batch size and worker count do not matter."""
        extra = self.plan.extra[m, rows]
        for flag, ops in ((True, REFERENCE_EQUALIZE + mod.augment), (False, mod.augment)):
            sel = np.flatnonzero(extra == flag)
            if not ops or len(sel) == 0:
                continue
            rngs = [rng_for(self.seed, self.epoch, m, int(self.plan.row[rows[j]]), AUG_PURPOSE) for j in sel]
            x[torch.from_numpy(sel)] = apply_ops(x[torch.from_numpy(sel)], ops, rngs)
        return x
