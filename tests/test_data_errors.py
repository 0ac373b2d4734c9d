"""Every bad input gives one DataError/ConfigError line that names the file (or key) and the problem."""
from __future__ import annotations

import json
import re

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mailnet.cli import main as cli_main
from mailnet.data import build_data, load_manifest
from mailnet.errors import ConfigError, DataError, MailnetError
from data_helpers import one_line, write_csv


def good_arrays(n: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for s in ("train", "val", "test"):
        out[f"{s}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        out[f"{s}_labels"] = (np.arange(n) % 2).astype(np.uint8).reshape(n, 1)
    return out


def write_npz(root: Path, arrays: dict, flag: str = "breastmnist") -> Path:
    path = root / flag / f"{flag}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def build_breast(root: Path):
    return build_data({"modalities": [{"name": "breast", "flag": "breastmnist"}]}, data_root=root)


def test_good_fixture_builds(tmp_path):
    write_npz(tmp_path, good_arrays())
    data = build_breast(tmp_path)
    assert data.split_sizes("test") == [6]


def test_missing_npz_names_path_url_and_command(tmp_path):
    with pytest.raises(DataError) as e:
        build_breast(tmp_path)
    one_line(e, str(tmp_path / "breastmnist" / "breastmnist.npz"), "zenodo.org", "mailnet data download breastmnist")


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_truncated_or_corrupt_npz(tmp_path, damage):
    path = write_npz(tmp_path, good_arrays(50))
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2] if damage == "truncated" else b"not a zip file at all" * 10)
    with pytest.raises(DataError) as e:
        build_breast(tmp_path)
    one_line(e, str(path), "truncated or corrupt")


def test_wrong_keys(tmp_path):
    arrays = good_arrays()
    arrays["x_test"] = arrays.pop("test_images")
    path = write_npz(tmp_path, arrays)
    with pytest.raises(DataError) as e:
        build_breast(tmp_path)
    one_line(e, str(path), "missing key 'test_images'")


@pytest.mark.parametrize("labels,needle", [
    (np.array([[0], [1], [5], [0], [1], [0]], dtype=np.uint8), "label 5 out of range for 2 classes"),
    (np.zeros((6, 2), dtype=np.uint8), "shape (N,) or (N, 1)"),
    (np.array([0, 1, np.nan, 0, 1, 0]).reshape(6, 1), "NaN"),
    (np.array([0, 1, 0.5, 0, 1, 0]).reshape(6, 1), "whole numbers"),
    (np.zeros((5, 1), dtype=np.uint8), "has 6 rows but val_labels has 5"),
])
def test_bad_labels(tmp_path, labels, needle):
    arrays = good_arrays()
    arrays["val_labels"] = labels
    path = write_npz(tmp_path, arrays)
    with pytest.raises(DataError) as e:
        build_breast(tmp_path)
    one_line(e, str(path), needle)


@pytest.mark.parametrize("images,needle", [
    (np.zeros((6, 28), dtype=np.uint8), "must have shape"),
    (np.zeros((6, 28, 28, 2), dtype=np.uint8), "must have shape"),
    (np.zeros((6, 28, 28), dtype=np.int64), "dtype int64"),
    (np.full((6, 28, 28), np.nan, dtype=np.float32), "NaN"),
    (np.full((6, 28, 28), 3.0, dtype=np.float32), "[0, 1]"),
])
def test_bad_images(tmp_path, images, needle):
    arrays = good_arrays()
    arrays["train_images"] = images
    path = write_npz(tmp_path, arrays)
    with pytest.raises(DataError) as e:
        build_breast(tmp_path)
    one_line(e, str(path), "train_images", needle)


def test_float_images_in_range_are_accepted(tmp_path):
    arrays = good_arrays()
    arrays["train_images"] = arrays["train_images"].astype(np.float32) / 255.0
    write_npz(tmp_path, arrays)
    batch = next(iter(build_breast(tmp_path).loader("train", 6, shuffle=False)))
    assert 0 <= batch["images"][0].min() and batch["images"][0].max() <= 1


def test_zero_sample_split(tmp_path):
    arrays = good_arrays()
    arrays["test_images"] = arrays["test_images"][:0]
    arrays["test_labels"] = arrays["test_labels"][:0]
    path = write_npz(tmp_path, arrays)
    with pytest.raises(DataError) as e:
        build_breast(tmp_path)
    one_line(e, "'breast'", str(path), "zero samples")


def folder_cfg(root: Path) -> dict:
    return {"modalities": [{"name": "f", "source": "folder", "root": str(root)}]}


def test_missing_folder(tmp_path):
    with pytest.raises(DataError) as e:
        build_data(folder_cfg(tmp_path / "nope"))
    one_line(e, str(tmp_path / "nope"), "not found")


def test_empty_class_folder(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a" / "0.png")
    with pytest.raises(DataError) as e:
        build_data(folder_cfg(tmp_path))
    one_line(e, str(tmp_path / "b"), "empty class folder")


def test_folder_without_classes(tmp_path):
    with pytest.raises(DataError) as e:
        build_data(folder_cfg(tmp_path))
    one_line(e, str(tmp_path), "no class folders")


def test_unreadable_image_file(tmp_path):
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / c / "0.png")
    bad = tmp_path / "b" / "1.png"
    bad.write_text("this is not a png")
    with pytest.raises(DataError) as e:
        build_data(folder_cfg(tmp_path))
    one_line(e, str(bad), "unreadable image file")


def test_truncated_image_file_fails_when_read(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    bad = tmp_path / "a" / "0.png"
    bad.write_bytes(bad.read_bytes()[:200])  # header intact (passes the scan), pixel data cut
    data = build_data(folder_cfg(tmp_path) | {"split_fractions": {"val": 0.34, "test": 0.34}})
    for workers in (0, 1):  # errors raised in a loader worker come back as the same single line
        with pytest.raises(DataError) as e:
            for split in ("train", "val", "test"):
                list(data.loader(split, 2, num_workers=workers))
        one_line(e, str(bad), "unreadable image file")


def csv_cfg(path: Path, **kw) -> dict:
    return {"modalities": [{"name": "c", "source": "csv", "csv": str(path), **kw}]}


def _imgs(tmp_path: Path, n: int) -> list[str]:
    for i in range(n):
        Image.fromarray(np.full((8, 8), i * 10, np.uint8)).save(tmp_path / f"{i}.png")
    return [f"{i}.png" for i in range(n)]


def test_csv_missing_file_and_column(tmp_path):
    with pytest.raises(DataError) as e:
        build_data(csv_cfg(tmp_path / "none.csv"))
    one_line(e, "none.csv", "not found")
    path = write_csv(tmp_path / "m.csv", ["path", "diagnosis"], [[p, 0] for p in _imgs(tmp_path, 4)])
    with pytest.raises(DataError) as e:
        build_data(csv_cfg(path))
    one_line(e, str(path), "missing column(s) label")


def test_csv_missing_image_path(tmp_path):
    rows = [[p, i % 2] for i, p in enumerate(_imgs(tmp_path, 4))] + [["gone.png", 1], ["gone2.png", 0]]
    path = write_csv(tmp_path / "m.csv", ["path", "label"], rows)
    with pytest.raises(DataError) as e:
        build_data(csv_cfg(path))
    one_line(e, str(path), "line 6", "gone.png", "and 1 more")


@pytest.mark.parametrize("value,needle", [("nan", "missing label"), ("", "missing label"), ("-1", "out of range")])
def test_csv_bad_label_values(tmp_path, value, needle):
    rows = [[p, i % 2] for i, p in enumerate(_imgs(tmp_path, 4))]
    rows[2][1] = value
    path = write_csv(tmp_path / "m.csv", ["path", "label"], rows)
    with pytest.raises(DataError) as e:
        build_data(csv_cfg(path, num_classes=2))
    one_line(e, str(path), needle)


@pytest.mark.parametrize("value,needle", [("7", "class indices [0, 1, 7] leave out [2, 3, 4, 5, 6]"),
                                          ("1e30", "class indices [0, 1, 1000000000000000019884624838656] leave out"),
                                          ("1.5", "label '1.5' is out of range"), ("inf", "NaN or infinite value")])
def test_csv_inferred_class_count_needs_every_class_index(tmp_path, value, needle):
    """Without num_classes the class count is inferred from the labels: a stray 7 (or 1e30, which used to build a
    task of 1e30 classes and exhaust the memory) must be refused, not turned into empty classes."""
    rows = [[p, i % 2] for i, p in enumerate(_imgs(tmp_path, 4))]
    rows[2][1] = value
    path = write_csv(tmp_path / "m.csv", ["path", "label"], rows)
    with pytest.raises(DataError) as e:
        build_data(csv_cfg(path))
    one_line(e, str(path), needle)


def test_csv_multilabel_nan_and_header_only(tmp_path):
    rows = [[p, 1, 0] for p in _imgs(tmp_path, 3)]
    rows[1][2] = "NaN"
    path = write_csv(tmp_path / "m.csv", ["path", "a", "b"], rows)
    with pytest.raises(DataError) as e:
        build_data(csv_cfg(path, label_columns=["a", "b"]))
    one_line(e, str(path), "line 3", "NaN")
    empty = write_csv(tmp_path / "e.csv", ["path", "label"], [])
    with pytest.raises(DataError) as e:
        build_data(csv_cfg(empty))
    one_line(e, str(empty), "zero samples")


def test_paired_manifest_missing_column(tmp_path):
    rows = [[p, p, 0, "train"] for p in _imgs(tmp_path, 3)]
    path = write_csv(tmp_path / "p.csv", ["ct", "mr", "y", "split"], rows)
    cfg = {"mode": "paired", "manifest_csv": str(path), "modalities": [{"column": "ct"}, {"column": "pet"}],
           "tasks": [{"column": "y"}]}
    with pytest.raises(DataError) as e:
        build_data(cfg)
    one_line(e, str(path), "missing column(s) pet")


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"^data\.colour: unknown key"):
        build_data({"modalities": [{"flag": "breastmnist"}], "colour": 1}, data_root=tmp_path)
    with pytest.raises(ConfigError, match=r"data\.modalities\[0\]\.channels"):
        build_data({"modalities": [{"flag": "breastmnist", "channels": 2}]}, data_root=tmp_path)
    with pytest.raises(ConfigError, match=r"data\.tasks\[0\]: give exactly one"):
        build_data({"mode": "paired", "manifest_csv": "x.csv", "modalities": [{"column": "a"}], "tasks": [{}]})
    with pytest.raises(ConfigError, match=r"data\.subset\.train"):
        build_data({"modalities": [{"flag": "breastmnist"}], "subset": {"train": 0}}, data_root=tmp_path)


def test_bad_manifest_file(tmp_path):
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(DataError) as e:
        load_manifest(tmp_path / "m.json")
    one_line(e, "m.json", "unreadable")
    (tmp_path / "n.json").write_text('{"format": "other"}')
    with pytest.raises(DataError, match="not a mailnet data manifest"):
        load_manifest(tmp_path / "n.json")
    from mailnet.data.manifest import MANIFEST_FORMAT, MANIFEST_VERSION

    good = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "mode": "unpaired", "seed": 0,
            "equalize": "none", "modalities": [{"name": "a", "splits": {"test": {"pool": "test", "indices": [0, 1]}}}]}
    for change, needle in (({"seed": "abc"}, "'seed' must be an integer, got 'abc'"),
                           ({"modalities": [1]}, r"modalities\[0\] must be a mapping"),
                           ({"modalities": [{"splits": {"test": {"indices": ["a"]}}}]},
                            r"modalities\[0\].splits.test.indices must be a list of integers")):
        (tmp_path / "b.json").write_text(json.dumps({**good, **change}))
        with pytest.raises(DataError, match=needle):  # a traceback before (ValueError, AttributeError)
            load_manifest(tmp_path / "b.json")
    (tmp_path / "g.json").write_text(json.dumps(good))
    assert load_manifest(tmp_path / "g.json")["seed"] == 0


def test_cli_prints_one_line(tmp_path, capsys):
    path = write_npz(tmp_path, good_arrays())
    path.write_bytes(b"junk")
    assert cli_main(["data", "describe", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mailnet: error:") and str(path) in err and len(err.splitlines()) == 1
    assert cli_main(["data", "download", "nosuchmnist", "--data-root", str(tmp_path)]) == 2
    assert "unknown MedMNIST 2D flag" in capsys.readouterr().err
    assert cli_main(["data", "describe", "breastmnist", "--size", "99", "--data-root", str(tmp_path)]) == 2
    assert "breastmnist: MedMNIST files come in 28, 64, 128, 224 px, not 99" in capsys.readouterr().err
    assert isinstance(DataError("x"), MailnetError)


@pytest.mark.parametrize("change, needle", [
    ({"train_images": np.zeros((2, 28, 28), np.uint8)}, "train_images has 2 rows but train_labels has 6"),
    ({"test_labels": np.zeros((4, 1), np.uint8)}, "test_images has 6 rows but test_labels has 4"),
    ({"train_images": np.zeros(6, np.uint8)}, "train_images: images must have shape (N, H, W) or (N, H, W, C) "
                                              "with C in 1/3/4, got (6,)"),
    ({"val_images": np.zeros((6, 28, 28, 2), np.uint8)}, "val_images: images must have shape"),
    ({"val_labels": np.zeros((6, 2), np.uint8)}, "val_labels: labels must have shape (N,) or (N, 1), got (6, 2)"),
])
def test_describe_checks_the_header_shapes_it_reports(tmp_path, capsys, monkeypatch, change, needle):
    """``data describe`` reads only the .npy headers; it reported the labels' row count (or an image axis as the
    channel count) for a file whose arrays disagree, with exit 0, and that file failed only when trained on."""
    path = write_npz(tmp_path, {**good_arrays(), **change})
    with monkeypatch.context() as m:
        m.setattr(np, "load", lambda *a, **k: pytest.fail("describe must not decompress the arrays"))
        assert cli_main(["data", "describe", "--data-root", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no table of wrong numbers before the error
    err = captured.err.strip()
    assert err.startswith(f"mailnet: error: {path}: ") and needle in err and len(err.splitlines()) == 1, err
    with pytest.raises(DataError, match=re.escape(needle)):  # loading the file says the same
        build_breast(tmp_path)


def test_an_unknown_modality_key_is_named_before_the_source_is_asked_for():
    """``flg:`` for ``flag:`` used to read 'data.modalities[0].source: expected one of ..., got None'."""
    from mailnet.data.config import parse_data_config

    for mod, needle in (({"name": "p", "flg": "pneumoniamnist"}, "data.modalities[0].flg: unknown key (allowed: "),
                        ({"flag": "pneumoniamnist", "size": 0, "colour": 1}, "data.modalities[0].colour: unknown key"),
                        ({"source": "folder", "root": "x", "flag": "y"}, "data.modalities[0].flag: unknown key")):
        with pytest.raises(ConfigError) as e:
            parse_data_config({"modalities": [mod]})
        msg = one_line(e, needle)
        assert ("flag" in msg.split("allowed: ")[1]) == (mod.get("source") != "folder"), msg
    with pytest.raises(ConfigError) as e:  # paired modalities: the same order (the key before a bad size)
        parse_data_config({"mode": "paired", "manifest_csv": "m.csv", "tasks": [{"column": "y"}],
                           "modalities": [{"column": "ct", "size": -1, "colum": "x"}]})
    one_line(e, "data.modalities[0].colum: unknown key (allowed: augment, channels, column, name, size)")
    with pytest.raises(ConfigError, match=r"data\.modalities\[0\]\.source: expected one of"):
        parse_data_config({"modalities": [{"name": "p"}]})  # every key known: the missing source is the problem


def test_a_wrong_mailnet_data_variable_is_named_not_skipped(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MAILNET_DATA", str(tmp_path / "nowhere"))
    assert cli_main(["data", "describe"]) == 2
    assert f"$MAILNET_DATA={tmp_path / 'nowhere'}: no such folder" in capsys.readouterr().err


def test_a_flow_mapping_without_a_space_after_the_colon_gets_its_fix():
    """'data.subset={train:64,val:32}' on the command line: YAML reads 'train:64' as one key."""
    from mailnet.config import DEFAULTS, load_yaml, merge, validate
    from mailnet.data.config import parse_data_config

    with pytest.raises(ConfigError) as e:
        parse_data_config({"modalities": [{"name": "p", "flag": "pneumoniamnist"}],
                           "subset": load_yaml("{train:64,val:32}")})
    one_line(e, "data.subset.train:64: unknown key", "(YAML needs a space after the colon: write train: 64)")
    with pytest.raises(ConfigError) as e:
        validate(merge(DEFAULTS, {"train": load_yaml("{epochs:3}")}))
    one_line(e, "train.epochs:3: unknown config key", "write epochs: 3")
