"""The pairing protocol as pure functions: which sample of each modality sits in which row of a pass.

Everything here is a function of (seed, epoch, sizes, policy), with no hidden state: a resumed run, another
worker process or another DDP rank computes the same plan. A plan holds, for every row of one pass:
positions inside each modality's split, whether that copy gets the equalisation augmentation, and per task the
sample index and whether the row counts (mask).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EQUALIZE_POLICIES: tuple[str, ...] = ("none", "repeat", "augment")

# purposes mixed into the seed so independent draws never share a stream
_TRAIN_PERM, _ROW_SHUFFLE, _PARTNER, _AUG, _SAMPLE, _SPLIT, _SUBSET = range(1, 8)


def rng_for(*keys: int) -> np.random.Generator:
    """An independent generator per tuple of non-negative integer keys (numpy's SeedSequence mixes them)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(k) & 0xFFFFFFFFFFFFFFFF for k in keys])))


@dataclass
class Plan:
    mod_pos: np.ndarray  # (M, L) int64: position in modality m's split
    extra: np.ndarray  # (M, L) bool: an equalisation copy (gets the reference augmentation)
    task_pos: np.ndarray  # (T, L) int64: index in task t's split
    task_mask: np.ndarray  # (T, L) bool
    row: np.ndarray  # (L,) int64: row number in the unsharded pass (seeds per-item augmentation)

    def __len__(self) -> int:
        return int(self.row.shape[0])

    def take(self, rows: np.ndarray) -> "Plan":
        return Plan(self.mod_pos[:, rows], self.extra[:, rows], self.task_pos[:, rows], self.task_mask[:, rows],
                    self.row[rows])


def _cycled_perms(n: int, length: int, rng: np.random.Generator | None) -> np.ndarray:
    """``length`` positions covering 0..n-1 as evenly as possible: whole (shuffled) passes, then a partial one."""
    reps = -(-length // n)
    parts = [rng.permutation(n) if rng is not None else np.arange(n) for _ in range(reps)]
    return np.concatenate(parts)[:length].astype(np.int64)


def unpaired_train_plan(sizes: list[int], *, seed: int, epoch: int, policy: str, shuffle: bool = True) -> Plan:
    """Index-aligned pairs after an independent per-modality shuffle, re-drawn every epoch.

    ``none``: the pass is as long as the smallest set (each modality drops its surplus this epoch);
    ``repeat`` / ``augment``: as long as the largest, shorter sets repeated (``augment`` marks the repeats as
    extra copies, which get the reference augmentation). Each sample appears once as an original.
    """
    if policy not in EQUALIZE_POLICIES:
        raise ValueError(f"unknown equalize policy {policy!r}")
    length = min(sizes) if policy == "none" else max(sizes)
    m_count = len(sizes)
    pos = np.zeros((m_count, length), dtype=np.int64)
    extra = np.zeros((m_count, length), dtype=bool)
    for m, n in enumerate(sizes):
        rng = rng_for(seed, epoch, m, _TRAIN_PERM) if shuffle else None
        seq = _cycled_perms(n, length, rng)
        flags = np.arange(length) >= n
        if shuffle and length > n:  # spread the copies through the epoch instead of leaving them at the end
            order = rng_for(seed, epoch, m, _ROW_SHUFFLE).permutation(length)
            seq, flags = seq[order], flags[order]
        pos[m], extra[m] = seq, flags & (policy == "augment")
    return Plan(pos, extra, pos.copy(), np.ones((m_count, length), dtype=bool), np.arange(length, dtype=np.int64))


def unpaired_eval_plan(sizes: list[int], *, partner_seed: int | None = None, shuffle: bool = False,
                       seed: int = 0, epoch: int = 0, keep: int | None = None) -> Plan:
    """One pass over every modality's full split: ``max(sizes)`` rows, sample ``i`` of modality ``m`` appears
    once with mask True; shorter sets fill the remaining rows as partners with mask False.

    ``partner_seed=None``: sample ``i`` sits in row ``i`` and partners cycle in order. With a seed each modality's
    rows are rearranged (and its partner copies drawn) independently, which re-draws who is paired with whom
    while every modality's masked set stays its whole split. ``keep``: that modality stays as without a seed, so
    its samples keep their rows (and, in a random model reseeded alike, their noise) while the partners change.
    """
    length = max(sizes)
    m_count = len(sizes)
    pos = np.zeros((m_count, length), dtype=np.int64)
    mask = np.zeros((m_count, length), dtype=bool)
    for m, n in enumerate(sizes):
        prng = rng_for(partner_seed, m, _PARTNER) if partner_seed is not None and m != keep else None
        fill = _cycled_perms(n, length - n, prng) if length > n else np.zeros(0, dtype=np.int64)
        seq = np.concatenate([np.arange(n, dtype=np.int64), fill])
        flags = np.arange(length) < n
        if prng is not None:
            order = prng.permutation(length)
            seq, flags = seq[order], flags[order]
        pos[m], mask[m] = seq, flags
    plan = Plan(pos, np.zeros_like(mask), pos.copy(), mask, np.arange(length, dtype=np.int64))
    if shuffle:
        plan = plan.take(rng_for(seed, epoch, _ROW_SHUFFLE).permutation(length))
        plan.row = np.arange(length, dtype=np.int64)
    return plan


def paired_plan(n: int, *, modalities: int, tasks: int, seed: int, epoch: int, shuffle: bool) -> Plan:
    """Paired data: row ``r`` is one subject; every modality and task reads the same index, all masks True."""
    order = rng_for(seed, epoch, 0, _TRAIN_PERM).permutation(n) if shuffle else np.arange(n)
    order = order.astype(np.int64)
    return Plan(np.tile(order, (modalities, 1)), np.zeros((modalities, n), dtype=bool), np.tile(order, (tasks, 1)),
                np.ones((tasks, n), dtype=bool), np.arange(n, dtype=np.int64))


def shard(plan: Plan, rank: int, world_size: int, *, pad_counts: bool) -> Plan:
    """Rank ``rank``'s rows: the strided slice ``rank::world_size`` after padding the pass to a multiple of
    ``world_size`` by repeating its first rows. Padding rows keep their mask when ``pad_counts`` (training, like
    ``DistributedSampler``) and get mask False otherwise (evaluation: every sample still counts once)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
    if world_size == 1:
        return plan
    length = len(plan)
    total = -(-length // world_size) * world_size
    rows = np.arange(total) % max(length, 1)
    padded = plan.take(rows)
    if total > length and not pad_counts:
        padded.task_mask[:, length:] = False
    padded.row = np.arange(total, dtype=np.int64)
    return padded.take(np.arange(rank, total, world_size))


def seeded_split(n: int, fractions: dict[str, float], seed: int, labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Split ``range(n)`` into train/val/test by fractions, stratified by class when single-label ``labels`` are
    given (so small classes still reach every split); returned indices are sorted."""
    rng = rng_for(seed, _SPLIT)
    groups = [np.arange(n)] if labels is None or labels.ndim != 1 else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    out: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for g in groups:
        g = g[rng.permutation(len(g))]
        n_test = int(round(len(g) * fractions.get("test", 0.0)))
        n_val = int(round(len(g) * fractions.get("val", 0.0)))
        out["test"].append(g[:n_test])
        out["val"].append(g[n_test:n_test + n_val])
        out["train"].append(g[n_test + n_val:])
    return {k: np.sort(np.concatenate(v)).astype(np.int64) for k, v in out.items()}


def seeded_subset(indices: np.ndarray, n: int, seed: int, modality: int, split: str) -> np.ndarray:
    """At most ``n`` of ``indices``, chosen by a seeded draw and kept in their original order."""
    if n >= len(indices):
        return indices
    code = {"train": 0, "val": 1, "test": 2}.get(split, 3)
    pick = rng_for(seed, modality, code, _SUBSET).choice(len(indices), size=n, replace=False)
    return indices[np.sort(pick)]


def sample_positions(n: int, k: int, seed: int, modality: int) -> np.ndarray:
    """``k`` positions out of ``n`` (without replacement when possible) for partner banks."""
    rng = rng_for(seed, modality, _SAMPLE)
    return rng.choice(n, size=k, replace=k > n).astype(np.int64)


AUG_PURPOSE = _AUG
