"""The composed multimodal data set the engine trains and evaluates on (``build_data`` returns one).

It owns the pairing protocol (see ``plan.py``), hands out deterministic loaders per split and epoch, and can
write a manifest with every split's exact indices and the pairing seed, so a run can be audited and repeated.
"""
from __future__ import annotations

import os
from typing import Any, Iterable

import torch
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

from mailnet.data.dataset import ModalityRuntime, PlanDataset, TaskRuntime
from mailnet.data.plan import Plan, paired_plan, sample_positions, shard, unpaired_eval_plan, unpaired_train_plan
from mailnet.data.sources.base import SPLITS
from mailnet.data.types import ModalitySpec, TaskSpec
from mailnet.errors import DataError, MailnetError
from mailnet.utils import write_json

MANIFEST_FORMAT = "mailnet-data-manifest"


class BatchLoader(DataLoader):
    """A ``DataLoader`` whose worker-side ``MailnetError``s come back as the original one-line error (torch
    re-raises them with the worker's whole traceback in the message)."""

    def __iter__(self):
        it = super().__iter__()
        while True:
            try:
                batch = next(it)
            except StopIteration:
                return
            except MailnetError as e:
                text = str(e)
                if "\n" not in text:
                    raise
                last = [ln for ln in text.splitlines() if ln.startswith("mailnet.errors.")]
                msg = last[-1].split(": ", 1)[1] if last and ": " in last[-1] else text.splitlines()[-1]
                raise type(e)(msg) from None
            yield batch

MANIFEST_VERSION = 1


class MultimodalData:
    """M modalities and T tasks with their splits; ``loader`` yields batches in the ``data/types.py`` contract."""

    def __init__(self, *, mode: str, modalities: list[ModalityRuntime], tasks: list[TaskRuntime], seed: int,
                 equalize: str, split_seed: int, subset: dict[str, int] | None, config: dict | None = None,
                 extra: dict | None = None) -> None:
        self.mode = mode
        self._mods = modalities
        self._tasks = tasks
        self.seed = int(seed)
        self.equalize = equalize
        self.split_seed = int(split_seed)
        self.subset = subset
        self.config = config or {}
        self._extra = extra or {}

    # ---- what the model is built from -------------------------------------------------------------------------
    @property
    def modalities(self) -> list[ModalitySpec]:
        return [m.spec for m in self._mods]

    @property
    def tasks(self) -> list[TaskSpec]:
        return [t.spec for t in self._tasks]

    @property
    def paired(self) -> bool:
        return self.mode == "paired"

    def split_sizes(self, split: str) -> list[int]:
        """Size of ``split`` for every modality (unpaired: they differ; paired: all equal)."""
        self._check_split(split)
        return [m.split_size(split) for m in self._mods]

    def labels(self, split: str) -> list[Any]:
        """Per task, the labels of ``split`` in index order (numpy arrays; rows of 0/1 for multi-label tasks)."""
        self._check_split(split)
        return [t.labels[split] for t in self._tasks]

    def sample_ids(self, split: str) -> list[list[str]]:
        """Per task, each sample of ``split`` in index order, so predictions can be traced back to the user's data:
        unpaired, the ids of the task's modality; paired, the subject's image of every modality joined by ``;``."""
        self._check_split(split)
        per_mod = [m.sample_ids(split) for m in self._mods]
        if self.paired:
            subjects = [";".join(ids) for ids in zip(*per_mod)]
            return [subjects for _ in self._tasks]
        return [per_mod[t.spec.modality if t.spec.modality is not None else i] for i, t in enumerate(self._tasks)]

    def undecodable_files(self) -> tuple[int, list[str]]:
        """Decode every image file every split reads: (files read, the one-line error of each file that fails),
        so a corrupt file is found before a long training instead of when an epoch reaches it."""
        total, errors = 0, {}
        for mod in self._mods:
            for split in mod.splits:
                n, bad = mod.undecodable(split)
                total += n
                errors.update(dict.fromkeys(bad))
        return total, list(errors)

    # ---- loaders ----------------------------------------------------------------------------------------------
    def plan(self, split: str, *, epoch: int = 0, shuffle: bool | None = None, partner_seed: int | None = None,
             keep_modality: int | None = None) -> Plan:
        """The unsharded row plan of one pass (pure function of the arguments and the data's seed)."""
        self._check_split(split)
        shuffle = (split == "train") if shuffle is None else bool(shuffle)
        sizes = self.split_sizes(split)
        if self.paired:
            return paired_plan(sizes[0], modalities=len(self._mods), tasks=len(self._tasks), seed=self.seed,
                               epoch=epoch, shuffle=shuffle)
        if split == "train":
            return unpaired_train_plan(sizes, seed=self.seed, epoch=epoch, policy=self.equalize, shuffle=shuffle)
        return unpaired_eval_plan(sizes, partner_seed=partner_seed, shuffle=shuffle, seed=self.seed, epoch=epoch,
                                  keep=keep_modality)

    def dataset(self, split: str, *, epoch: int = 0, shuffle: bool | None = None, rank: int = 0, world_size: int = 1,
                partner_seed: int | None = None, keep_modality: int | None = None) -> PlanDataset:
        """Batch-level dataset for one rank's share of a pass (``ds[list_of_rows] -> batch``)."""
        plan = self.plan(split, epoch=epoch, shuffle=shuffle, partner_seed=partner_seed, keep_modality=keep_modality)
        plan = shard(plan, rank, world_size, pad_counts=(split == "train"))
        return PlanDataset(self._mods, self._tasks, plan, split, seed=self.seed, epoch=epoch, train=(split == "train"))

    def loader(self, split: str, batch_size: int, *, epoch: int = 0, shuffle: bool | None = None,
               drop_last: bool = False, rank: int = 0, world_size: int = 1, num_workers: int = 0,
               partner_seed: int | None = None, keep_modality: int | None = None) -> BatchLoader:
        """Batches of one pass over ``split`` for this rank.

        Training (``train``): pairs re-drawn per ``epoch`` and the configured size equalisation; augmentation on.
        Evaluation (``val``/``test``): every modality's full split, each sample once with mask True.
        ``shuffle`` defaults to True for train and False otherwise; ``partner_seed`` re-draws evaluation partners
        (of every modality but ``keep_modality``, whose samples keep their rows).
        With ``world_size > 1`` the rows are padded to a multiple of ``world_size`` (train: repeated rows count as
        in ``DistributedSampler``; eval: repeated rows have mask False) and rank ``r`` gets rows ``r::world_size``.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        ds = self.dataset(split, epoch=epoch, shuffle=shuffle, rank=rank, world_size=world_size,
                          partner_seed=partner_seed, keep_modality=keep_modality)
        sampler = BatchSampler(SequentialSampler(range(len(ds))), batch_size=batch_size, drop_last=drop_last)
        return BatchLoader(ds, sampler=sampler, batch_size=None, num_workers=num_workers,
                          persistent_workers=False, pin_memory=False)

    def num_samples(self, split: str) -> list[int]:
        """Per task: rows with mask True in one (unsharded) pass; for val/test this is each task's split size."""
        plan = self.plan(split)
        return [int(x) for x in plan.task_mask.sum(axis=1)]

    def steps_per_epoch(self, split: str, batch_size: int, *, world_size: int = 1, drop_last: bool = False) -> int:
        rows = -(-len(self.plan(split)) // world_size)
        return rows // batch_size if drop_last else -(-rows // batch_size)

    def sample_images(self, modality: int, split: str, n: int, seed: int) -> torch.Tensor:
        """``n`` un-augmented images of one modality (a partner bank, e.g. for single-modality prediction)."""
        self._check_split(split)
        if not 0 <= modality < len(self._mods):
            raise DataError(f"modality index {modality} out of range (0..{len(self._mods) - 1})")
        mod = self._mods[modality]
        pos = sample_positions(mod.split_size(split), n, seed, modality)
        return mod.load(split, pos)

    # ---- audit --------------------------------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """JSON-able record of exactly what data the run sees; ``build_data(..., manifest=m)`` reproduces it."""
        mods = []
        for mod in self._mods:
            info = mod.source.info()
            mods.append({
                "name": mod.spec.name,
                "source": {"kind": info.kind, "ident": info.ident, "location": info.location,
                           "pools": dict(info.pools), "native_channels": info.channels,
                           "native_size": info.image_size},
                "in_chans": mod.spec.in_chans,
                "img_size": mod.spec.img_size,
                "splits": {s: {"pool": pool, "count": int(len(idx)), "indices": [int(i) for i in idx]}
                           for s, (pool, idx) in mod.splits.items()},
                "fingerprints": {pool: mod.source.fingerprint(pool) for pool in info.pools},
            })
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "mode": self.mode,
            "seed": self.seed,
            "split_seed": self.split_seed,
            "equalize": self.equalize,
            "subset": self.subset,
            "pairing": (
                "paired: one row per subject, order shuffled per epoch from (seed, epoch)" if self.paired else
                "unpaired: train pairs by index after per-modality permutations drawn from (seed, epoch, modality); "
                "val/test cover every modality's full split once (mask True), shorter splits cycled as partners"
            ),
            "modalities": mods,
            "tasks": [t.spec.to_dict() for t in self._tasks],
            "config": self.config,
            **self._extra,
        }

    def save_manifest(self, path: str | os.PathLike) -> None:
        write_json(path, self.manifest())

    def describe(self) -> dict[str, Any]:
        """A short summary for logs and the CLI (no index lists)."""
        return {
            "mode": self.mode,
            "seed": self.seed,
            "equalize": self.equalize,
            "subset": self.subset,
            "modalities": [
                {**m.spec.to_dict(), "source": m.source.info().kind, "ident": m.source.info().ident,
                 "native_channels": m.source.info().channels, "augment": [a.name for a in m.augment],
                 "splits": {s: m.split_size(s) for s in SPLITS}}
                for m in self._mods
            ],
            "tasks": [{**t.spec.to_dict(), "class_names": list(t.spec.class_names),
                       "splits": {s: int(len(t.labels[s])) for s in SPLITS}} for t in self._tasks],
            "rows_per_pass": {s: len(self.plan(s)) for s in SPLITS},
        }

    def _check_split(self, split: str) -> None:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r} (train, val, test)")

    def __iter__(self) -> Iterable:  # pragma: no cover - guard against a common mistake
        raise TypeError("iterate over data.loader(split, batch_size), not over the data object")
