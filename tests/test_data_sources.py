"""Image folders, CSV manifests and paired data, on small generated fixtures; the batched augmentation."""
from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from mailnet.data import CsvSource, ImageFolderSource, build_data, load_manifest
from mailnet.data.augment import AugOp, apply_ops, gaussian_kernels
from mailnet.errors import ConfigError, DataError, MailnetWarning
from data_helpers import write_csv


def write_png(path: Path, rng: np.random.Generator, size: int = 12, rgb: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size, size, 3) if rgb else (size, size)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)


def make_folder(root: Path, *, splits: bool, classes=("cat", "dog", "emu"), per_class=6, rgb=False) -> Path:
    rng = np.random.default_rng(0)
    for s in (["train", "val", "test"] if splits else [None]):
        for c in classes:
            for i in range(per_class):
                base = root / s / c if s else root / c
                write_png(base / f"{i}.png", rng, size=10 + i, rgb=rgb)  # mixed sizes on purpose
    return root


def test_folder_with_split_dirs(tmp_path):
    root = make_folder(tmp_path / "pets", splits=True)
    src = ImageFolderSource(root)
    info = src.info()
    assert info.class_names == ("cat", "dog", "emu") and info.task_type == "multi-class" and info.channels == 1
    assert info.pools == {"train": 18, "val": 18, "test": 18}
    data = build_data({"modalities": [{"name": "pets", "source": "folder", "root": str(root), "size": 16,
                                       "augment": ["hflip", {"rotate": 10}]}]})
    batch = next(iter(data.loader("train", 7)))
    assert batch["images"][0].shape == (7, 3, 16, 16)
    assert 0 <= batch["images"][0].min() and batch["images"][0].max() <= 1
    assert set(batch["labels"][0].tolist()) <= {0, 1, 2}


def test_folder_without_splits_is_split_seeded_and_saved(tmp_path):
    root = make_folder(tmp_path / "flat", splits=False, per_class=10, rgb=True)
    cfg = {"modalities": [{"name": "flat", "source": "folder", "root": str(root), "channels": "keep",
                           "split_fractions": {"val": 0.2, "test": 0.3}}], "split_seed": 5}
    data = build_data(cfg)
    assert data.split_sizes("train") == [15] and data.split_sizes("val") == [6] and data.split_sizes("test") == [9]
    assert data.modalities[0].in_chans == 3
    man = data.manifest()["modalities"][0]["splits"]
    allidx = sorted(man["train"]["indices"] + man["val"]["indices"] + man["test"]["indices"])
    assert allidx == list(range(30)) and man["test"]["pool"] == "all"
    again = build_data(cfg)
    assert again.manifest()["modalities"] == data.manifest()["modalities"]
    other = build_data({**cfg, "split_seed": 6})
    assert other.manifest()["modalities"][0]["splits"]["test"] != man["test"]
    # a manifest applied to a folder whose files changed is refused
    saved = data.manifest()
    write_png(root / "cat" / "new.png", np.random.default_rng(9), rgb=True)
    with pytest.raises(DataError, match="differs from the data the manifest was written for"):
        build_data(cfg, manifest=saved)


def test_csv_source_with_split_column_and_class_names(tmp_path):
    rng = np.random.default_rng(1)
    rows = []
    for i in range(12):
        write_png(tmp_path / "img" / f"{i}.png", rng, rgb=i % 2 == 0)
        rows.append([f"img/{i}.png", ["low", "mid", "high"][i % 3], ["train", "val", "test"][i % 3 if i > 2 else 0]])
    path = write_csv(tmp_path / "list.csv", ["path", "grade", "split"], rows)
    src = CsvSource(path, label_column="grade", class_names=["low", "mid", "high"], task_type="ordinal")
    info = src.info()
    assert info.task_type == "ordinal" and info.num_classes == 3 and info.pools["train"] == 6
    assert src.labels("train").tolist() == [0, 1, 2, 0, 0, 0]
    data = build_data({"modalities": [{"name": "g", "source": "csv", "csv": str(path), "label_column": "grade",
                                       "class_names": ["low", "mid", "high"], "task_type": "ordinal",
                                       "channels": 1, "size": 8}]})
    batch = next(iter(data.loader("test", 4)))
    assert batch["images"][0].shape == (3, 1, 8, 8) and data.tasks[0].task_type == "ordinal"  # rows 5, 8, 11


def test_csv_multilabel(tmp_path):
    rng = np.random.default_rng(2)
    rows = []
    for i in range(10):
        write_png(tmp_path / f"{i}.png", rng)
        rows.append([f"{i}.png", i % 2, (i // 2) % 2, 1])
    path = write_csv(tmp_path / "ml.csv", ["path", "a", "b", "c"], rows)
    data = build_data({"modalities": [{"name": "ml", "source": "csv", "csv": str(path),
                                       "label_columns": ["a", "b", "c"], "split_fractions": {"val": 0.2, "test": 0.2}}]})
    assert data.tasks[0].task_type == "multi-label" and data.tasks[0].num_classes == 3
    batch = next(iter(data.loader("train", 6)))
    y = batch["labels"][0]
    assert y.dtype == torch.float32 and y.shape[1] == 3 and set(y.flatten().tolist()) <= {0.0, 1.0}


def make_paired(tmp_path: Path, n: int = 20) -> Path:
    rng = np.random.default_rng(3)
    rows = []
    for i in range(n):
        write_png(tmp_path / "ct" / f"{i}.png", rng, size=14)
        write_png(tmp_path / "mr" / f"{i}.png", rng, size=9, rgb=True)
        split = "train" if i < 12 else ("val" if i < 16 else "test")
        rows.append([f"subj{i}", f"ct/{i}.png", f"mr/{i}.png", i % 2, i % 4, split])
    return write_csv(tmp_path / "paired.csv", ["subject", "ct", "mr", "tumour", "stage", "split"], rows)


def paired_cfg(path: Path) -> dict:
    return {"mode": "paired", "manifest_csv": str(path), "size": 12,
            "modalities": [{"name": "ct", "column": "ct", "channels": 1}, {"column": "mr", "augment": ["hflip"]}],
            "tasks": [{"name": "tumour", "column": "tumour"}, {"name": "stage", "column": "stage", "task_type": "ordinal"}]}


def test_paired_manifest_rows_are_subjects(tmp_path):
    path = make_paired(tmp_path)
    data = build_data(paired_cfg(path), seed=1)
    assert data.paired and [m.in_chans for m in data.modalities] == [1, 3]
    assert [(t.task_type, t.num_classes, t.modality) for t in data.tasks] == [("binary", 2, None), ("ordinal", 4, None)]
    assert data.num_samples("train") == [12, 12] and data.num_samples("test") == [4, 4]
    raw = list(csv.DictReader(open(path)))
    for batch in data.loader("train", 5):
        assert all(m.all() for m in batch["mask"])
        assert torch.equal(batch["index"][0], batch["index"][1])
        for i, y0, y1 in zip(batch["index"][0].tolist(), batch["labels"][0].tolist(), batch["labels"][1].tolist()):
            assert (int(raw[i]["tumour"]), int(raw[i]["stage"])) == (y0, y1)  # train pool rows 0..11 are csv rows
        assert batch["images"][0].shape[1:] == (1, 12, 12) and batch["images"][1].shape[1:] == (3, 12, 12)
    data.save_manifest(tmp_path / "m.json")
    again = build_data(paired_cfg(path), manifest=load_manifest(tmp_path / "m.json"))
    a, b = next(iter(data.loader("train", 6, epoch=3))), next(iter(again.loader("train", 6, epoch=3)))
    assert all(torch.equal(x, y) for k in a for x, y in zip(a[k], b[k]))
    twice = {**paired_cfg(path), "tasks": [{"name": "t", "column": "tumour"}, {"name": "t", "column": "stage"}]}
    with pytest.raises(ConfigError, match=r"data.tasks: names must be unique, got \['t', 't'\]"):
        build_data(twice)  # the reports and predictions would show one of the two heads
    for key, value in (("equalize", "repeat"), ("download", True)):  # unpaired-only keys would be ignored: refused
        with pytest.raises(ConfigError, match=rf"data.{key}: only used in unpaired mode"):
            build_data({**paired_cfg(path), key: value})


def test_batched_geometry_matches_torchvision():
    x = torch.rand(3, 2, 20, 20)
    rngs = [np.random.default_rng(i) for i in range(3)]
    op = AugOp("affine", {"degrees": 30.0, "translate_px": 3.0, "scale": (0.8, 1.2), "shear": 10.0})
    ours = op.apply(x, torch.tensor([op.draw(r) for r in rngs], dtype=torch.float64))
    for i, r in enumerate(np.random.default_rng(i) for i in range(3)):
        angle, tx, ty, s, sh = op.draw(r)
        ref = TF.affine(x[i], angle=angle, translate=[int(tx), int(ty)], scale=s, shear=[sh, 0.0],
                        interpolation=InterpolationMode.BILINEAR)
        assert torch.allclose(ours[i], ref, atol=1e-4)


def test_batched_blur_matches_torchvision_and_seeds_are_per_image():
    x = torch.rand(2, 3, 15, 15)
    blur = AugOp("blur", {"kernel": 3})
    ours = blur.apply(x, torch.tensor([[0.7], [1.9]], dtype=torch.float64))
    for i, s in enumerate((0.7, 1.9)):
        assert torch.allclose(ours[i], TF.gaussian_blur(x[i], [3, 3], [s, s]), atol=1e-5)
    assert torch.allclose(gaussian_kernels(torch.tensor([1.0]), 5).sum(), torch.tensor(1.0))
    ops = (AugOp("rotate", {"degrees": 20.0}), AugOp("translate", {"px": 5.0}))
    full = apply_ops(x.clone(), ops, [np.random.default_rng(10), np.random.default_rng(11)])
    alone = apply_ops(x[1:].clone(), ops, [np.random.default_rng(11)])
    assert torch.allclose(full[1:], alone, atol=1e-6)  # an image's result depends on its own generator only


def test_medmnist_size_choice_and_resize(tmp_path):
    rng = np.random.default_rng(4)
    arrays = {}
    for s in ("train", "val", "test"):
        arrays[f"{s}_images"] = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
        arrays[f"{s}_labels"] = rng.integers(0, 2, (4, 14), dtype=np.uint8)  # chestmnist: multi-label, 14 classes
    np.savez(tmp_path / "chestmnist_64.npz", **arrays)
    for size, want in ((64, 64), (32, 32), (100, 100)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = build_data({"modalities": [{"flag": "chestmnist", "size": size, "channels": "keep"}]},
                              data_root=tmp_path)
        upsampled = [str(w.message) for w in caught if issubclass(w.category, MailnetWarning)]
        if size > 64:  # read from the smaller file: the user is told, in one warning naming the file
            assert len(upsampled) == 1 and "chestmnist_64.npz (64 px) upsampled to 100 px" in upsampled[0]
            assert "mailnet data download chestmnist --size 128" in upsampled[0] and "source_size: 64" in upsampled[0]
        else:
            assert upsampled == []
        assert data.manifest()["modalities"][0]["source"]["location"].endswith("chestmnist_64.npz")
        assert data.tasks[0].task_type == "multi-label" and data.tasks[0].num_classes == 14
        batch = next(iter(data.loader("val", 4)))
        assert batch["images"][0].shape == (4, 3, want, want) and batch["labels"][0].shape == (4, 14)
    with pytest.raises(DataError, match=r"chestmnist_128\.npz not found"):
        build_data({"modalities": [{"flag": "chestmnist", "source_size": 128}]}, data_root=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MailnetWarning)  # asked for by source_size: meant, so no warning
        build_data({"modalities": [{"flag": "chestmnist", "size": 100, "source_size": 64}]}, data_root=tmp_path)



def test_download_true_fetches_the_file_of_the_right_size_instead_of_upsampling(tmp_path, monkeypatch):
    """With ``download: true`` and only a smaller file present, the file of the asked size (or the next MedMNIST
    size above it) is fetched; without it, the smaller one is upsampled with a warning (above)."""
    import mailnet.data.download as download

    rng = np.random.default_rng(5)

    def write(size: int) -> Path:
        arrays = {}
        for s in ("train", "val", "test"):
            arrays[f"{s}_images"] = rng.integers(0, 256, (4, size, size), dtype=np.uint8)
            arrays[f"{s}_labels"] = rng.integers(0, 2, (4, 1), dtype=np.uint8)
        path = tmp_path / "breastmnist" / ("breastmnist.npz" if size == 28 else f"breastmnist_{size}.npz")
        path.parent.mkdir(exist_ok=True)
        np.savez(path, **arrays)
        return path

    write(28)
    fetched = []
    monkeypatch.setattr(download, "download_medmnist", lambda flag, size, root: fetched.append(size) or write(size))
    with warnings.catch_warnings():
        warnings.simplefilter("error", MailnetWarning)  # nothing is upsampled
        data = build_data({"modalities": [{"flag": "breastmnist", "size": 100, "download": True}]}, data_root=tmp_path)
    assert fetched == [128]
    assert data.manifest()["modalities"][0]["source"]["location"].endswith("breastmnist_128.npz")


def test_cli_describe_config(tmp_path, capsys):
    from mailnet.cli import main as cli_main

    path = make_paired(tmp_path)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"data": paired_cfg(path)}))
    assert cli_main(["data", "describe", "--config", str(tmp_path / "c.yaml")]) == 0
    out = capsys.readouterr().out
    assert "mode: paired" in out and "tumour" in out and "ordinal" in out
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"data": {**paired_cfg(path), "sise": 3}}))
    assert cli_main(["data", "describe", "--config", str(tmp_path / "bad.yaml")]) == 2
    assert "data.sise: unknown key" in capsys.readouterr().err


def test_a_task_type_set_over_the_sources_must_fit_its_labels(tmp_path):
    """MedMNIST retina is ordinal with 5 classes: 'multi-class' fits, 'binary' or 'multi-label' would train a head
    that cannot fit the labels (a traceback at the first batch, or AUC nan), so they are refused at once."""
    rng = np.random.default_rng(6)
    arrays = {}
    for s in ("train", "val", "test"):
        arrays[f"{s}_images"] = rng.integers(0, 256, (6, 28, 28, 3), dtype=np.uint8)
        arrays[f"{s}_labels"] = rng.integers(0, 5, (6, 1), dtype=np.uint8)
    np.savez(tmp_path / "retinamnist.npz", **arrays)
    data = build_data({"modalities": [{"flag": "retinamnist", "task_type": "multi-class"}]}, data_root=tmp_path)
    assert data.tasks[0].task_type == "multi-class" and data.tasks[0].num_classes == 5
    for asked, needle in (("binary", "'binary' needs 2 classes, the labels have 5"),
                          ("multi-label", "'multi-label' does not fit labels that are 'ordinal'")):
        with pytest.raises(DataError, match=needle):
            build_data({"modalities": [{"flag": "retinamnist", "task_type": asked}]}, data_root=tmp_path)


def test_relative_data_paths_still_resolve_from_another_directory_for_a_recorded_run(tmp_path, monkeypatch):
    """A run made in its data's folder with relative paths must be evaluated, attacked or resumed from anywhere:
    the manifest records the working directory the paths were relative to."""
    project = tmp_path / "project"
    make_folder(project / "xray", splits=True)
    paired = make_paired(project)
    monkeypatch.chdir(project)
    folder_cfg = {"modalities": [{"name": "xray", "source": "folder", "root": "xray", "size": 12}]}
    pcfg = {**paired_cfg(paired), "manifest_csv": "paired.csv"}
    made = [build_data(c) for c in (folder_cfg, pcfg)]
    manifests = [d.manifest() for d in made]
    assert all(m["workdir"] == str(project) for m in manifests)
    assert manifests[0]["modalities"][0]["source"]["location"] == str(project / "xray")  # absolute, auditable

    monkeypatch.chdir(tmp_path)
    for cfg, data, manifest in zip((folder_cfg, pcfg), made, manifests):
        again = build_data(cfg, manifest=manifest)
        a, b = next(iter(data.loader("test", 4))), next(iter(again.loader("test", 4)))
        assert all(torch.equal(x, y) for k in ("images", "labels") for x, y in zip(a[k], b[k]))
        assert again.manifest()["workdir"] == str(project)  # kept when the manifest is written again
    # without the record, the error names the key and every place tried (not only the last)
    with pytest.raises(DataError) as err:
        build_data(folder_cfg, data_root=tmp_path / "root")
    assert str(err.value) == (f"data.modalities[0].root: 'xray' not found (tried {tmp_path / 'xray'}, "
                              f"{tmp_path / 'root' / 'xray'})")
    with pytest.raises(DataError, match=r"^data.manifest_csv: 'paired.csv' not found \(tried "):
        build_data(pcfg, data_root=tmp_path / "root")


def test_channels_keep_refuses_a_mix_of_grey_and_colour_files(tmp_path):
    """'keep' used to follow the first file, so a folder of colour images with one grey file first became grey."""
    root = make_folder(tmp_path / "mixed", splits=False, per_class=6, rgb=True)
    write_png(root / "cat" / "000_grey.png", np.random.default_rng(1))  # sorts first
    cfg = {"modalities": [{"name": "m", "source": "folder", "root": str(root), "channels": "keep", "size": 12}]}
    with pytest.raises(DataError) as err:
        build_data(cfg)
    assert str(err.value) == (f"data.modalities[0].channels: 'keep' but {root} holds both grey (1-channel) and "
                              "colour (3-channel) images; set channels: 1 or 3 to convert them all")
    cfg["modalities"][0]["channels"] = 3
    assert build_data(cfg).modalities[0].in_chans == 3
    (root / "cat" / "000_grey.png").unlink()
    cfg["modalities"][0]["channels"] = "keep"
    assert build_data(cfg).modalities[0].in_chans == 3


def test_a_folder_beside_the_split_folders_is_named_not_silently_skipped(tmp_path):
    root = make_folder(tmp_path / "pets", splits=True)
    write_png(root / "extra" / "cat" / "0.png", np.random.default_rng(2))
    with pytest.warns(MailnetWarning, match=r"pets: folder\(s\) extra beside the split folders are not read"):
        src = ImageFolderSource(root)
    assert src.info().pools == {"train": 18, "val": 18, "test": 18}


def test_describe_decode_finds_a_truncated_file_that_the_header_check_lets_through(tmp_path, capsys):
    from mailnet.cli import main as cli_main

    root = make_folder(tmp_path / "pets", splits=True, per_class=2)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"modalities": [{"name": "pets", "source": "folder", "root": str(root),
                                                            "size": 8}]}}))
    assert cli_main(["data", "describe", "--config", str(cfg), "--decode"]) == 0
    assert "decoded 18 image files: all readable" in capsys.readouterr().out  # 3 splits x 3 classes x 2

    bad = root / "val" / "dog" / "1.png"
    bad.write_bytes(bad.read_bytes()[:-60])  # header intact, pixel data cut
    assert cli_main(["data", "describe", "--config", str(cfg)]) == 0  # headers only: not found
    capsys.readouterr()
    assert cli_main(["data", "describe", "--config", str(cfg), "--decode"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and str(bad) in err[0] and "truncated" in err[0]
    assert "1 of 18 image files cannot be decoded" in err[1]
    assert cli_main(["data", "describe", "--decode"]) == 2
    assert "--decode: decodes the files of a config's data" in capsys.readouterr().err
