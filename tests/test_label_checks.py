"""Label typos must not silently become classes: mixed numeric/text label columns, classes without a training
sample (unless the config declares the classes), a lone class in a long column, and out-of-range labels, each as
one line that names the file (or modality), the column and the line as a user sees it (header = line 1)."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mailnet.data import build_data
from mailnet.data.build import check_trained_classes
from mailnet.data.types import TaskSpec
from mailnet.errors import DataError, MailnetWarning
from data_helpers import one_line, write_csv


def images(folder: Path, n: int) -> list[str]:
    """``n`` distinct tiny PNGs in ``folder``; their names relative to it."""
    for i in range(n):
        Image.fromarray(np.full((8, 8), i * 7 % 256, np.uint8)).save(folder / f"{i}.png")
    return [f"{i}.png" for i in range(n)]


def csv_cfg(path: Path, **kw) -> dict:
    return {"modalities": [{"name": "c", "source": "csv", "csv": str(path), "size": 8, "channels": 1, **kw}]}


def paired_cfg(path: Path, **task) -> dict:
    return {"mode": "paired", "manifest_csv": str(path), "size": 8, "modalities": [{"column": "ct", "channels": 1}],
            "tasks": [{"name": "dx", "column": "dx", **task}]}


def make_folder(root: Path, counts: dict[str, dict[str, int]]) -> Path:
    """``counts[split][class]`` images under root/split/class (split '' for a flat root/class layout)."""
    for split, classes in counts.items():
        for c, n in classes.items():
            d = root / split / c if split else root / c
            d.mkdir(parents=True)
            images(d, n)
    return root


def split_labels(data, split: str) -> np.ndarray:
    """The first task's labels of ``split`` (as the loaders serve them)."""
    return data._tasks[0].labels[split]


def folder_cfg(root: Path, **kw) -> dict:
    return {"modalities": [{"name": "f", "source": "folder", "root": str(root), "size": 8, "channels": 1, **kw}]}


# --- mixed numeric and text labels ----------------------------------------------------------------------------

def test_a_word_among_class_indices_is_refused_with_its_line(tmp_path):
    rows = [[p, i % 2] for i, p in enumerate(images(tmp_path, 20))]
    rows[5][1] = "malignant"  # line 7 of the file
    path = write_csv(tmp_path / "m.csv", ["path", "label"], rows)
    with pytest.raises(DataError) as e:
        build_data(csv_cfg(path))
    one_line(e, str(path), "column 'label' mixes numeric and text labels", "line 7 'malignant'", "(0, 1)")
    # listed in class_names, the three values are all meant: a 3-class task, the word a class of its own
    data = build_data(csv_cfg(path, class_names=["0", "1", "malignant"]))
    assert data.tasks[0].num_classes == 3 and data.tasks[0].class_names == ("0", "1", "malignant")


def test_the_minority_kind_is_the_odd_one_and_every_odd_line_is_counted(tmp_path):
    rows = [[p, ["benign", "malignant"][i % 2]] for i, p in enumerate(images(tmp_path, 30))]
    for i in (2, 4, 6, 8, 9):
        rows[i][1] = "1"
    path = write_csv(tmp_path / "m.csv", ["path", "label"], rows)
    with pytest.raises(DataError) as e:
        build_data(csv_cfg(path))
    one_line(e, "numeric line 4 '1', line 6 '1', line 8 '1' (and 2 more) among 25 text labels (benign, malignant)")


def test_paired_csv_refuses_mixed_labels_too(tmp_path):
    rows = [[p, ["normal", "pneumonia"][i % 2]] for i, p in enumerate(images(tmp_path, 20))]
    rows[3][1] = "2"
    path = write_csv(tmp_path / "p.csv", ["ct", "dx"], rows)
    with pytest.raises(DataError) as e:
        build_data(paired_cfg(path))
    one_line(e, str(path), "column 'dx' mixes numeric and text labels", "line 5 '2'")


# --- classes without a training sample ------------------------------------------------------------------------

def test_folder_class_only_in_test_is_refused_unless_class_names_declare_it(tmp_path):
    root = make_folder(tmp_path / "pets", {"train": {"cat": 3, "dog": 3}, "val": {"cat": 2, "dog": 2},
                                           "test": {"cat": 2, "dog": 2, "other": 2}})
    with pytest.raises(DataError) as e:
        build_data(folder_cfg(root))
    one_line(e, str(root), "class 'other'", "test/other", "no train/other folder", "class_names")
    data = build_data(folder_cfg(root, class_names=["cat", "dog", "other"]))  # declared: meant, and kept
    assert data.tasks[0].num_classes == 3
    assert (split_labels(data, "test") == 2).sum() == 2 and not (split_labels(data, "train") == 2).any()


def test_csv_label_seen_only_in_val_or_test_rows_is_refused_unless_num_classes_declares_it(tmp_path):
    paths = images(tmp_path, 9)
    rows = [[p, i % 2, "train"] for i, p in enumerate(paths[:6])] + [[paths[6], 0, "val"], [paths[7], 1, "test"],
                                                                    [paths[8], 2, "test"]]
    path = write_csv(tmp_path / "m.csv", ["path", "label", "split"], rows)
    with pytest.raises(DataError) as e:
        build_data(csv_cfg(path))
    one_line(e, str(path), "line 10 column 'label'", "class '2' has 1 test row(s) but no 'train' row")
    data = build_data(csv_cfg(path, num_classes=3))
    assert data.tasks[0].num_classes == 3


def test_paired_csv_typo_in_a_test_row_is_refused_unless_class_names_declare_it(tmp_path):
    paths = images(tmp_path, 10)
    rows = [[p, ["normal", "pneumonia"][i % 2], ["train", "val", "test"][min(i // 4, 2)]] for i, p in enumerate(paths)]
    rows[8][1] = "tumor"  # line 10
    path = write_csv(tmp_path / "p.csv", ["ct", "dx", "split"], rows)
    with pytest.raises(DataError) as e:
        build_data(paired_cfg(path))
    one_line(e, str(path), "line 10 column 'dx'", "class 'tumor'", "no 'train' row")
    data = build_data(paired_cfg(path, class_names=["normal", "pneumonia", "tumor"]))
    assert data.tasks[0].num_classes == 3


def test_a_class_the_seeded_split_puts_outside_train_is_refused_with_what_to_do(tmp_path):
    """One 'rare' image in a flat folder: with test 0.6 the stratified split sends it to test (round(0.6) = 1)."""
    root = make_folder(tmp_path / "flat", {"": {"a": 10, "b": 10, "rare": 1}})
    cfg = folder_cfg(root, split_fractions={"val": 0.1, "test": 0.6})
    with pytest.raises(DataError) as e:
        build_data(cfg)
    one_line(e, f"modality 'f' ({root})", "class 'rare' has no sample in the train split",
             "data.split_seed 0) put all 1 of its sample(s) in val/test", "data.modalities[0].class_names")
    declared = {"modalities": [{**cfg["modalities"][0], "class_names": ["a", "b", "rare"]}]}
    data = build_data(declared)
    assert not (split_labels(data, "train") == 2).any() and (split_labels(data, "test") == 2).sum() == 1
    # replaying a recorded run (evaluate, resume) never re-judges its split: the recorded data is what it is
    again = build_data(cfg, manifest=data.manifest())
    assert again.tasks[0].num_classes == 3
    # with the default fractions the single image stays in train (round(0.2) = 0): nothing to refuse
    assert (split_labels(build_data(folder_cfg(root)), "train") == 2).sum() == 1


def test_a_class_the_subset_drops_from_train_names_data_subset():
    spec = TaskSpec("t", "multi-class", 3, ("a", "b", "c"))
    with pytest.raises(DataError) as e:
        check_trained_classes(spec, np.array([0, 1, 1]), np.array([0, 1, 2, 2]), np.array([5, 5, 4]), 0,
                              where="modality 't' (x)", keys="data.modalities[0].class_names")
    one_line(e, "modality 't' (x): class 'c'", "data.subset.train kept none of its 2 training sample(s)")
    check_trained_classes(spec, np.array([0, 1, 2]), np.array([0, 1, 2]), np.array([1, 1, 1]), 0, where="", keys="")


def test_medmnist_classes_are_declared_by_the_dataset(tmp_path):
    """MedMNIST's classes come from its INFO: a split without a class is the dataset's, not a typo."""
    rng = np.random.default_rng(0)
    arrays = {}
    for s in ("train", "val", "test"):
        arrays[f"{s}_images"] = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
        arrays[f"{s}_labels"] = (np.arange(6) % 2).astype(np.uint8).reshape(6, 1)
    arrays["train_labels"][:] = 0  # no malignant training sample
    (tmp_path / "breastmnist").mkdir()
    np.savez_compressed(tmp_path / "breastmnist" / "breastmnist.npz", **arrays)
    data = build_data({"modalities": [{"name": "breast", "flag": "breastmnist"}]}, data_root=tmp_path)
    assert data.tasks[0].num_classes == 2 and set(split_labels(data, "train").tolist()) == {0}


# --- a lone class in a long column, and out-of-range labels ---------------------------------------------------

def test_a_class_on_one_row_of_a_long_column_is_warned_about_unless_declared(tmp_path):
    rows = [[p, ["normal", "pneumonia"][i % 2]] for i, p in enumerate(images(tmp_path, 24))]
    rows[12][1] = "tumor"  # line 14
    path = write_csv(tmp_path / "p.csv", ["ct", "dx"], rows)
    with pytest.warns(MailnetWarning) as caught:
        data = build_data(paired_cfg(path))
    assert len(caught) == 1
    msg = str(caught[0].message)
    assert "\n" not in msg and str(path) in msg and "'tumor' (line 14)" in msg and "class_names" in msg
    assert data.tasks[0].num_classes == 3  # a warning: the lone row may be a real, rare class
    with warnings.catch_warnings():
        warnings.simplefilter("error", MailnetWarning)
        build_data(paired_cfg(path, class_names=["normal", "pneumonia", "tumor"]))
        rows[12][1] = "pneumonia"
        build_data(paired_cfg(write_csv(tmp_path / "q.csv", ["ct", "dx"], rows)))  # no lone class: no warning


@pytest.mark.parametrize("value,kw", [("5", {"num_classes": 2}), ("2", {"class_names": ["no", "yes"]})])
def test_out_of_range_label_with_declared_classes_names_its_line(tmp_path, value, kw):
    rows = [[p, i % 2] for i, p in enumerate(images(tmp_path, 6))]
    rows[3][1] = value  # line 5
    path = write_csv(tmp_path / "m.csv", ["path", "label"], rows)
    with pytest.raises(DataError) as e:
        build_data(csv_cfg(path, **kw))
    one_line(e, str(path), f"line 5 column 'label': label '{value}' out of range for 2 classes (expected 0..1)")
