"""The pairing protocol as pure functions: coverage, equalisation, determinism, sharding."""
from __future__ import annotations

import numpy as np
import pytest

from mailnet.data.plan import seeded_split, seeded_subset, shard, unpaired_eval_plan, unpaired_train_plan

SIZES = [23, 7, 11]


@pytest.mark.parametrize("policy", ["none", "repeat", "augment"])
def test_train_plan_lengths_and_coverage(policy):
    plan = unpaired_train_plan(SIZES, seed=1, epoch=0, policy=policy)
    length = min(SIZES) if policy == "none" else max(SIZES)
    assert len(plan) == length and plan.task_mask.all()
    for m, n in enumerate(SIZES):
        pos = plan.mod_pos[m]
        assert pos.min() >= 0 and pos.max() < n
        counts = np.bincount(pos, minlength=n)
        if policy == "none":
            assert counts.max() == 1  # no repeats when trimming to the smallest set
        else:
            assert counts.min() >= length // n and counts.max() <= -(-length // n)  # evenly repeated
            # each sample appears exactly once as an original (extra=False) under 'augment'
            if policy == "augment":
                originals = pos[~plan.extra[m]]
                assert sorted(originals.tolist()) == list(range(n))
                assert plan.extra[m].sum() == length - n
            else:
                assert not plan.extra[m].any()


def test_train_plan_pure_function_of_seed_and_epoch():
    a = unpaired_train_plan(SIZES, seed=5, epoch=3, policy="augment")
    b = unpaired_train_plan(SIZES, seed=5, epoch=3, policy="augment")
    c = unpaired_train_plan(SIZES, seed=5, epoch=4, policy="augment")
    d = unpaired_train_plan(SIZES, seed=6, epoch=3, policy="augment")
    assert np.array_equal(a.mod_pos, b.mod_pos) and np.array_equal(a.extra, b.extra)
    assert not np.array_equal(a.mod_pos, c.mod_pos)
    assert not np.array_equal(a.mod_pos, d.mod_pos)


@pytest.mark.parametrize("partner_seed", [None, 0, 7])
def test_eval_plan_visits_every_sample_once(partner_seed):
    plan = unpaired_eval_plan(SIZES, partner_seed=partner_seed)
    assert len(plan) == max(SIZES)
    for m, n in enumerate(SIZES):
        visited = plan.task_pos[m][plan.task_mask[m]]
        assert sorted(visited.tolist()) == list(range(n))
        assert plan.mod_pos[m].max() < n


def test_partner_seed_redraws_partners_only():
    a = unpaired_eval_plan(SIZES, partner_seed=1)
    b = unpaired_eval_plan(SIZES, partner_seed=2)
    fixed = unpaired_eval_plan(SIZES)
    assert np.array_equal(fixed.mod_pos[0], np.arange(23))  # fixed order: sample i in row i
    pairs_a = set(zip(a.mod_pos[0].tolist(), a.mod_pos[1].tolist()))
    pairs_b = set(zip(b.mod_pos[0].tolist(), b.mod_pos[1].tolist()))
    assert pairs_a != pairs_b


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_shard_eval_disjoint_and_complete(world_size):
    plan = unpaired_eval_plan(SIZES, partner_seed=None)
    shards = [shard(plan, r, world_size, pad_counts=False) for r in range(world_size)]
    assert len({len(s) for s in shards}) == 1  # equal lengths keep DDP in step
    for m, n in enumerate(SIZES):
        seen = np.concatenate([s.task_pos[m][s.task_mask[m]] for s in shards])
        assert sorted(seen.tolist()) == list(range(n))
    rows = np.concatenate([s.row for s in shards])
    assert len(set(rows.tolist())) == len(rows)


def test_shard_train_pads_with_counted_rows():
    plan = unpaired_train_plan(SIZES, seed=0, epoch=0, policy="repeat")
    shards = [shard(plan, r, 2, pad_counts=True) for r in range(2)]
    assert sum(len(s) for s in shards) == 24 and all(s.task_mask.all() for s in shards)
    with pytest.raises(ValueError):
        shard(plan, 2, 2, pad_counts=True)


def test_seeded_split_stratified_and_disjoint():
    labels = np.array([0] * 50 + [1] * 10)
    parts = seeded_split(60, {"val": 0.1, "test": 0.2}, seed=3, labels=labels)
    allidx = np.concatenate(list(parts.values()))
    assert sorted(allidx.tolist()) == list(range(60))
    assert set(labels[parts["test"]].tolist()) == {0, 1} and set(labels[parts["val"]].tolist()) == {0, 1}
    assert np.array_equal(parts["train"], seeded_split(60, {"val": 0.1, "test": 0.2}, 3, labels)["train"])
    sub = seeded_subset(np.arange(100), 10, seed=0, modality=1, split="train")
    assert len(sub) == 10 and np.all(np.diff(sub) > 0)


def test_eval_plan_keep_holds_one_modality_in_place_while_partners_move():
    base = unpaired_eval_plan([7, 4, 5])
    moved = unpaired_eval_plan([7, 4, 5], partner_seed=3, keep=1)
    assert np.array_equal(moved.mod_pos[1], base.mod_pos[1]) and np.array_equal(moved.task_mask[1], base.task_mask[1])
    assert not np.array_equal(moved.mod_pos[0], base.mod_pos[0])
    assert not np.array_equal(moved.mod_pos[2], base.mod_pos[2])
    for m, n in enumerate([7, 4, 5]):  # every modality still covers its whole split once
        assert sorted(moved.task_pos[m][moved.task_mask[m]]) == list(range(n))
