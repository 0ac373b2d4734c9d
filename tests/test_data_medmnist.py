"""Real data: 2- and 3-modality loaders on PneumoniaMNIST, BreastMNIST and RetinaMNIST (28 px)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mailnet.cli import main as cli_main
from mailnet.data import MedMNISTSource, build_data, load_manifest
from mailnet.errors import ConfigError, DataError

PNEU = {"name": "pneumonia", "flag": "pneumoniamnist"}
BREAST = {"name": "breast", "flag": "breastmnist"}
RETINA = {"name": "retina", "flag": "retinamnist"}
TEST_SIZES = {"pneumonia": 624, "breast": 156, "retina": 400}


def _cfg(*mods, **kw) -> dict:
    return {"modalities": [dict(m) for m in mods], **kw}


def _equal_batches(a: dict, b: dict) -> bool:
    return all(torch.equal(x, y) for k in a for x, y in zip(a[k], b[k]))


def test_source_describes_itself(data_root):
    src = MedMNISTSource("retinamnist", data_root)
    info = src.info()
    assert (info.channels, info.num_classes, info.task_type) == (3, 5, "ordinal")
    assert info.pools == {"train": 1080, "val": 120, "test": 400}
    pneu = MedMNISTSource("pneumoniamnist", data_root).info()
    assert (pneu.channels, pneu.task_type, pneu.class_names) == (1, "binary", ("normal", "pneumonia"))
    assert src.images("test", np.array([0, 5])).dtype == np.uint8


def test_two_modality_batches(data_root):
    data = build_data(_cfg(PNEU, BREAST, subset={"train": 200}), data_root=data_root)
    assert [m.in_chans for m in data.modalities] == [3, 3] and not data.paired
    assert [(t.task_type, t.num_classes, t.modality) for t in data.tasks] == [("binary", 2, 0), ("binary", 2, 1)]
    batch = next(iter(data.loader("train", 32)))
    assert set(batch) == {"images", "labels", "mask", "index"}
    for x in batch["images"]:
        assert x.shape == (32, 3, 28, 28) and x.dtype == torch.float32
        assert x.min() >= 0 and x.max() <= 1 and x.max() > 0.5
    for y, mk in zip(batch["labels"], batch["mask"]):
        assert y.dtype == torch.int64 and y.shape == (32,) and set(y.tolist()) <= {0, 1}
        assert mk.dtype == torch.bool and mk.all()
    # gray replicated to 3 identical channels
    assert torch.equal(batch["images"][0][:, 0], batch["images"][0][:, 2])


def test_three_modality_eval_visits_every_test_sample_once(data_root):
    data = build_data(_cfg(PNEU, BREAST, {**RETINA, "channels": "keep", "size": 32}), data_root=data_root)
    assert [m.in_chans for m in data.modalities] == [3, 3, 3] and data.modalities[2].img_size == 32
    assert data.num_samples("test") == [624, 156, 400]
    for partner_seed in (None, 3):
        seen = [[] for _ in range(3)]
        rows = 0
        for batch in data.loader("test", 100, partner_seed=partner_seed):
            rows += batch["images"][0].shape[0]
            assert batch["images"][2].shape[1:] == (3, 32, 32)
            for t in range(3):
                y = batch["labels"][t]
                assert 0 <= int(y.min()) and int(y.max()) < data.tasks[t].num_classes
                seen[t] += batch["index"][t][batch["mask"][t]].tolist()
        assert rows == 624  # one pass = the largest test split
        for t, name in enumerate(TEST_SIZES):
            assert sorted(seen[t]) == list(range(TEST_SIZES[name]))


def test_eval_labels_match_the_file(data_root):
    data = build_data(_cfg(BREAST, RETINA), data_root=data_root)
    raw = np.load(data_root / "retinamnist" / "retinamnist.npz")["test_labels"][:, 0]
    for batch in data.loader("test", 64):
        idx, y = batch["index"][1], batch["labels"][1]
        assert np.array_equal(raw[idx.numpy()], y.numpy())


def test_determinism_and_epoch_change(data_root):
    cfg = _cfg(PNEU, BREAST, subset={"train": 120}, equalize="augment")
    a = build_data(cfg, data_root=data_root, seed=4)
    b = build_data(cfg, data_root=data_root, seed=4)
    e0 = next(iter(a.loader("train", 40, epoch=0)))
    assert _equal_batches(e0, next(iter(b.loader("train", 40, epoch=0))))
    e1 = next(iter(a.loader("train", 40, epoch=1)))
    assert not torch.equal(e0["index"][0], e1["index"][0])
    # workers see the same pixels (augmentation seeded per row, not by the process)
    w = list(a.loader("train", 40, epoch=1, num_workers=2))
    assert _equal_batches(e1, w[0])


def test_equalize_policies(data_root):
    for policy, length in (("none", 546), ("repeat", 1080), ("augment", 1080)):
        data = build_data(_cfg(BREAST, RETINA, equalize=policy), data_root=data_root)
        assert data.num_samples("train") == [length, length]
        seen = [[], []]
        for batch in data.loader("train", 256):
            for t in range(2):
                seen[t] += batch["index"][t].tolist()
        assert len(seen[0]) == length
        assert len(set(seen[1])) == length  # the larger set is seen whole, without repeats
        assert len(set(seen[0])) == 546 if policy != "none" else len(set(seen[0])) == length


def test_augmented_copies_differ_from_originals(data_root):
    cfg = _cfg(PNEU, BREAST, subset={"train": 600}, equalize="augment")
    data = build_data(cfg, data_root=data_root)
    plan = data.plan("train", epoch=0)
    ds = data.dataset("train", epoch=0)
    extra_rows = np.flatnonzero(plan.extra[1])[:8]
    batch = ds[extra_rows.tolist()]
    clean = data._mods[1].load("train", plan.mod_pos[1, extra_rows])
    assert not torch.allclose(batch["images"][1], clean)  # copies are augmented
    assert torch.equal(batch["images"][0], data._mods[0].load("train", plan.mod_pos[0, extra_rows]))


def test_sharding_world_size_two_covers_all_rows(data_root):
    data = build_data(_cfg(PNEU, BREAST), data_root=data_root)
    seen = [[], []]
    lengths = []
    for rank in range(2):
        n = 0
        for batch in data.loader("test", 128, rank=rank, world_size=2):
            n += batch["images"][0].shape[0]
            for t in range(2):
                seen[t] += batch["index"][t][batch["mask"][t]].tolist()
        lengths.append(n)
    assert lengths == [312, 312]
    assert sorted(seen[0]) == list(range(624)) and sorted(seen[1]) == list(range(156))


def test_manifest_round_trip(data_root, tmp_path):
    cfg = _cfg(PNEU, BREAST, RETINA, subset={"train": 100, "val": 30})
    data = build_data(cfg, data_root=data_root, seed=11)
    path = tmp_path / "run" / "data_manifest.json"
    data.save_manifest(path)
    m = load_manifest(path)
    assert m["seed"] == 11 and m["modalities"][0]["splits"]["val"]["count"] == 30
    again = build_data(cfg, data_root=data_root, seed=0, manifest=m)  # the manifest's seed wins
    assert again.manifest()["modalities"] == m["modalities"]
    assert _equal_batches(next(iter(data.loader("train", 50, epoch=2))), next(iter(again.loader("train", 50, epoch=2))))
    json.dumps(data.describe())
    # a manifest for other data is refused
    m2 = json.loads(json.dumps(m))
    m2["modalities"][1]["splits"]["test"]["indices"][0] = 10_000
    with pytest.raises(DataError, match="out of range"):
        build_data(cfg, data_root=data_root, manifest=m2)
    with pytest.raises(DataError, match="'retina' in the config"):
        build_data(_cfg(PNEU, RETINA, BREAST, subset={"train": 100, "val": 30}), data_root=data_root, manifest=m)


def test_sample_images_and_gray_channel(data_root):
    data = build_data(_cfg({**PNEU, "channels": 1}, {**RETINA, "channels": 1, "size": 20}), data_root=data_root)
    bank = data.sample_images(1, "test", 6, seed=0)
    assert bank.shape == (6, 1, 20, 20) and 0 <= bank.min() and bank.max() <= 1
    assert torch.equal(bank, data.sample_images(1, "test", 6, seed=0))


def test_config_errors_name_the_key(data_root):
    with pytest.raises(ConfigError, match=r"data\.modalities\[1\]\.flg: unknown key"):
        build_data(_cfg(PNEU, {"name": "b", "source": "medmnist", "flg": "breastmnist"}), data_root=data_root)
    with pytest.raises(ConfigError, match=r"data\.equalize"):
        build_data(_cfg(PNEU, equalize="grow"), data_root=data_root)
    with pytest.raises(ConfigError, match=r"data\.modalities\[0\]\.augment\[0\]: unknown augmentation"):
        build_data(_cfg({**PNEU, "augment": ["mixup"]}), data_root=data_root)
    with pytest.raises(DataError, match="unknown MedMNIST 2D flag"):
        build_data(_cfg({"flag": "pneumonia"}), data_root=data_root)


def test_cli_describe_lists_the_real_datasets(data_root, capsys):
    assert cli_main(["data", "describe", "--data-root", str(data_root)]) == 0
    out = capsys.readouterr().out
    for flag, counts in (("pneumoniamnist", "4708"), ("breastmnist", "546"), ("retinamnist", "1080")):
        line = next(ln for ln in out.splitlines() if ln.startswith(flag))
        assert counts in line
    assert "ordinal" in out and "binary" in out
    assert cli_main(["data", "describe", "--data-root", str(data_root), "dermamnist"]) == 2
    err = capsys.readouterr().err
    assert "dermamnist.npz" in err and "zenodo" in err and "mailnet data download dermamnist" in err
    assert len(err.strip().splitlines()) == 1
