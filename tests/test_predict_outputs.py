"""What prediction files say: ``predictions_test.csv`` of a run (sample ids, predicted class, probability columns
named after the classes) and ``mailnet predict``'s output (ids, columns, errors on bad batches), on a tiny real run."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from mailnet.cli import main
from mailnet.data import build_data
from mailnet.data.types import TaskSpec
from mailnet.engine.evaluation import SplitPredictions
from mailnet.engine.rundir import save_predictions
from mailnet.errors import MailnetWarning

PNEUMONIA = ["normal", "pneumonia"]
BREAST = ["malignant", "normal, benign"]

CFG = {
    "name": "tiny-predict",
    "seed": 0,
    "model": {"name": "mail", "kwargs": {"widths": [8, 8, 16, 16], "stem": "cifar"}},
    "data": {
        "mode": "unpaired", "size": 28, "equalize": "repeat",
        "subset": {"train": 64, "val": 16, "test": 24},
        "modalities": [
            {"name": "pneumonia", "source": "medmnist", "flag": "pneumoniamnist", "channels": 1},
            {"name": "breast", "source": "medmnist", "flag": "breastmnist", "channels": 1},
        ],
    },
    "train": {"epochs": 1, "batch_size": 32, "lr": 0.002},
    "eval": {"batch_size": 64, "mc_samples": 1, "partner_draws": 0, "partner_bank": 4},
}


def cli(*args: str) -> int:
    return main(list(args))


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_root) -> Path:
    """One tiny trained run shared by the tests (training is the slow part)."""
    tmp = tmp_path_factory.mktemp("predict")
    (tmp / "cfg.yaml").write_text(yaml.safe_dump(CFG))
    assert cli("train", "--config", str(tmp / "cfg.yaml"), "--run-dir", str(tmp / "run"), "--data-root",
               str(data_root), "--quiet", "--device", "cpu") == 0
    return tmp / "run"


def test_run_predictions_name_each_sample_and_class(run, data_root):
    header, rows = read_csv(run / "predictions_test.csv")
    assert header == ["task", "index", "label", "id", "pred", "p_normal", "p_pneumonia", "p_malignant",
                      "p_normal, benign"]
    manifest = json.loads((run / "manifest.json").read_text())
    for m, (name, flag, cols) in enumerate((("pneumonia", "pneumoniamnist", ["p_normal", "p_pneumonia"]),
                                            ("breast", "breastmnist", ["p_malignant", "p_normal, benign"]))):
        mine = [r for r in rows if r["task"] == name]
        official = manifest["modalities"][m]["splits"]["test"]["indices"]
        labels = np.load(data_root / flag / f"{flag}.npz")["test_labels"].reshape(-1)
        assert len(mine) == 24
        for r in mine:
            # the id is the official test split's index: its label there is the row's label
            j = official[int(r["index"])]
            assert r["id"] == f"test[{j}]" and int(r["label"]) == labels[j]
            probs = [float(r[c]) for c in cols]
            assert sum(probs) == pytest.approx(1.0, abs=1e-5)
            assert int(r["pred"]) == int(probs[1] > 0.5)  # binary: thresholded as the metrics do
            assert all(r[c] == "" for c in header[5:] if c not in cols)  # the other task's classes stay empty


def test_save_predictions_multilabel_and_unnamed_classes(tmp_path):
    """Multi-label rows predict the 0/1 set thresholded at 0.5 (as the metrics do); classes named only by their
    index keep the p0, p1, ... columns."""
    tasks = [TaskSpec("ml", "multi-label", 3, ("a", "b", "c")), TaskSpec("k", "multi-class", 3, ("0", "1", "2"))]
    preds = SplitPredictions(
        labels=[np.array([[1, 0, 1], [0, 0, 0]]), np.array([2, 0])],
        probs=[np.array([[0.9, 0.2, 0.6], [0.1, 0.4, 0.5]]), np.array([[0.2, 0.3, 0.5], [0.5, 0.3, 0.2]])],
        indices=[np.array([0, 1]), np.array([0, 1])], loss=0.0)
    save_predictions(tmp_path, "test", tasks, preds, ids=[["x/1.png", "x/2.png"], ["test[4]", "test[9]"]])
    header, rows = read_csv(tmp_path / "predictions_test.csv")
    assert header == ["task", "index", "label", "id", "pred", "p_a", "p_b", "p_c", "p0", "p1", "p2"]
    assert [(r["id"], r["label"], r["pred"]) for r in rows] == [
        ("x/1.png", "1 0 1", "1 0 1"), ("x/2.png", "0 0 0", "0 0 0"), ("test[4]", "2", "2"), ("test[9]", "0", "0")]
    assert rows[2]["p2"] == "0.500000" and rows[2]["p_a"] == "" and rows[0]["p0"] == ""


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((10, 10), value, np.uint8)).save(path)


def test_sample_ids_of_file_sources(tmp_path):
    """Folder, CSV and paired-CSV sources name a sample by its path relative to the source's root, in split
    order, so the id of row ``index`` is the file whose label the row carries."""
    for s in ("train", "val", "test"):
        for c in ("cat", "dog"):
            for i in range(3):
                _png(tmp_path / "pets" / s / c / f"{i}.png", 10 * i)
    data = build_data({"modalities": [{"name": "pets", "source": "folder", "root": str(tmp_path / "pets"),
                                       "size": 8}]})
    (ids,) = data.sample_ids("test")
    labels = data._tasks[0].labels["test"]
    assert ids == [f"test/{c}/{i}.png" for c in ("cat", "dog") for i in range(3)]
    assert [["cat", "dog"][y] for y in labels] == [i.split("/")[1] for i in ids]

    rows = [[f"img/{i}.png", ["lo", "hi"][i % 2], ["train", "val", "test"][i % 3]] for i in range(12)]
    for i in range(12):
        _png(tmp_path / "img" / f"{i}.png", i)
    with open(tmp_path / "list.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "grade", "split"], *rows])
    data = build_data({"modalities": [{"name": "g", "source": "csv", "csv": str(tmp_path / "list.csv"),
                                       "label_column": "grade", "size": 8}]})
    assert data.sample_ids("test") == [[r[0] for r in rows if r[2] == "test"]]  # the paths as written

    prow = [[f"ct/{i}.png", f"mr/{i}.png", i % 2, "train" if i < 6 else ("val" if i < 8 else "test")]
            for i in range(10)]
    for i in range(10):
        _png(tmp_path / "ct" / f"{i}.png", i)
        _png(tmp_path / "mr" / f"{i}.png", i)
    with open(tmp_path / "paired.csv", "w", newline="") as f:
        csv.writer(f).writerows([["ct", "mr", "y", "split"], *prow])
    data = build_data({"mode": "paired", "manifest_csv": str(tmp_path / "paired.csv"), "size": 8,
                       "modalities": [{"name": "ct", "column": "ct"}, {"name": "mr", "column": "mr"}],
                       "tasks": [{"name": "y", "column": "y"}]})
    assert data.sample_ids("test") == [["ct/8.png;mr/8.png", "ct/9.png;mr/9.png"]]

    # the same lists kept in another folder, their relative paths read from `image_root`: ids are still as written
    (tmp_path / "lists").mkdir()
    for name in ("list.csv", "paired.csv"):
        (tmp_path / "lists" / name).write_text((tmp_path / name).read_text())
    data = build_data({"modalities": [{"name": "g", "source": "csv", "csv": str(tmp_path / "lists" / "list.csv"),
                                       "image_root": str(tmp_path), "label_column": "grade", "size": 8}]})
    assert data.sample_ids("test") == [[r[0] for r in rows if r[2] == "test"]]
    data = build_data({"mode": "paired", "manifest_csv": str(tmp_path / "lists" / "paired.csv"), "size": 8,
                       "image_root": str(tmp_path),
                       "modalities": [{"name": "ct", "column": "ct"}, {"name": "mr", "column": "mr"}],
                       "tasks": [{"name": "y", "column": "y"}]})
    assert data.sample_ids("test") == [["ct/8.png;mr/8.png", "ct/9.png;mr/9.png"]]


def _breast_pngs(data_root: Path, folder: Path, n: int) -> list[Path]:
    images = np.load(data_root / "breastmnist" / "breastmnist.npz")["test_images"]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(images[i]).save(folder / f"b{i}.png")
    return [folder / f"b{i}.png" for i in range(n)]


def test_predict_batch_csv_has_a_column_per_class_and_the_rows_ids(run, data_root, tmp_path, capsys):
    _breast_pngs(data_root, tmp_path / "imgs", 2)
    (tmp_path / "s.csv").write_text("breast,note\nimgs/b0.png,a\nimgs/b1.png,b\n")
    (tmp_path / "t.csv").write_text("id,breast\ncase-7,imgs/b0.png\n,imgs/b1.png\n")
    for name in ("s", "t"):
        assert cli("predict", str(run), "--csv", str(tmp_path / f"{name}.csv"), "--out",
                   str(tmp_path / f"{name}.out.csv")) == 0
    header, rows = read_csv(tmp_path / "s.out.csv")
    assert header == ["id", "task", "filled_from_partner_bank", "pred", "pred_name", "p_normal", "p_pneumonia",
                      "p_malignant", "p_normal, benign", "draws", "partners"]
    assert [r["id"] for r in rows] == ["imgs/b0.png", "imgs/b1.png"]  # the row's image path, not "row1"
    for r in rows:
        probs = [float(r["p_malignant"]), float(r["p_normal, benign"])]
        assert r["task"] == "breast" and r["filled_from_partner_bank"] == "pneumonia"
        assert r["draws"] == "1" and r["partners"] == "4"  # a deterministic model; the 4 images of the bank
        assert sum(probs) == pytest.approx(1.0, abs=1e-5) and r["p_normal"] == "" and r["p_pneumonia"] == ""
        assert int(r["pred"]) == int(probs[1] > 0.5) and r["pred_name"] == BREAST[int(r["pred"])]
    _, rows = read_csv(tmp_path / "t.out.csv")
    assert [r["id"] for r in rows] == ["case-7", "imgs/b1.png"]  # an id column wins; an empty cell falls back

    # one subject: the terminal shows the predicted class by name
    capsys.readouterr()
    assert cli("predict", str(run), "--image", f"breast={tmp_path / 'imgs' / 'b0.png'}") == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(f"breast: predicted {BREAST[int(rows[0]['pred'])]}  (malignant=")


def test_predict_batch_errors_and_skips(run, data_root, tmp_path, capsys):
    (tmp_path / "empty.csv").write_text("pneumonia,breast\n")
    capsys.readouterr()
    assert cli("predict", str(run), "--csv", str(tmp_path / "empty.csv")) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'empty.csv'}: the CSV has a header but no rows" in err and "give --image" not in err

    files = _breast_pngs(data_root, tmp_path / "mixed", 2)
    (tmp_path / "mixed" / "broken.png").write_bytes(b"not a png")
    with pytest.warns(MailnetWarning) as caught:
        assert cli("predict", str(run), "--folder", str(tmp_path / "mixed"), "--modality", "breast",
                   "--out", str(tmp_path / "m.csv")) == 0
    said = [str(w.message) for w in caught]
    assert re.search(r"broken\.png: unreadable image file .*; skipped", said[0])
    assert said[-1].startswith(f"{tmp_path / 'mixed'}: skipped 1 of its 3 image files")
    _, rows = read_csv(tmp_path / "m.csv")
    assert [r["id"] for r in rows] == [str(f) for f in files]

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"x")
    capsys.readouterr()
    with pytest.warns(MailnetWarning, match=r"a\.png: unreadable"):
        assert cli("predict", str(run), "--folder", str(tmp_path / "bad"), "--modality", "breast") == 2
    assert "none of its 1 image files could be read" in capsys.readouterr().err


def test_predict_csv_skips_a_missing_or_unreadable_row(run, data_root, tmp_path, capsys):
    """Like --folder: a bad row is skipped with a warning naming its CSV line and file, the rest is written, and the
    end says how many rows were skipped; only a CSV none of whose rows could be read fails."""
    _breast_pngs(data_root, tmp_path / "imgs", 2)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"not a png")
    csv_path = tmp_path / "s.csv"
    csv_path.write_text("id,breast\na,imgs/b0.png\nb,imgs/gone.png\nc,imgs/broken.png\nd,imgs/b1.png\n")
    with pytest.warns(MailnetWarning) as caught:
        assert cli("predict", str(run), "--csv", str(csv_path), "--out", str(tmp_path / "o.csv")) == 0
    said = [str(w.message) for w in caught]
    assert any(m.startswith(f"{csv_path}: line 3: ") and "gone.png: image file not found" in m for m in said)
    assert any(m.startswith(f"{csv_path}: line 4: ") and "broken.png" in m for m in said)
    assert said[-1].startswith(f"{csv_path}: skipped 2 of its 4 rows")
    _, rows = read_csv(tmp_path / "o.csv")
    assert [r["id"] for r in rows] == ["a", "d"]

    csv_path.write_text("breast\nimgs/gone.png\n")
    capsys.readouterr()
    with pytest.warns(MailnetWarning, match="line 2: .*gone.png"):
        assert cli("predict", str(run), "--csv", str(csv_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"mailnet: error: {csv_path}: none of its 1 rows could be read (see the warnings above)"


def test_predict_refuses_input_it_would_silently_drop(run, data_root, tmp_path, capsys):
    """A modality given twice (the last image won), --image beside a batch (it vanished among the rows) and a CSV
    with two columns of one modality (one was read): each is a one-line error now."""
    _breast_pngs(data_root, tmp_path / "imgs", 2)
    a, b = tmp_path / "imgs" / "b0.png", tmp_path / "imgs" / "b1.png"
    csv_path = tmp_path / "twice.csv"
    csv_path.write_text("id,breast,breast\nx,imgs/b0.png,imgs/b1.png\n")
    for args, said in ((["--image", f"breast={a}", "--image", f"breast={b}"], "--image breast= given twice"),
                       (["--image", f"breast={a}", "--folder", str(tmp_path / "imgs"), "--modality", "breast"],
                        "cannot be combined with --folder"),
                       (["--csv", str(csv_path)], "column 'breast' appears more than once")):
        capsys.readouterr()
        assert cli("predict", str(run), *args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and said in err[0]


def test_predict_seed_chooses_the_draws_of_a_random_model(run, data_root, tmp_path, capsys):
    """A model random at inference averages --draws draws seeded from --seed: the same seed repeats the
    probabilities, another seed changes them, and the CSV says how many draws and partners were averaged."""
    import torch

    from mailnet.engine.checkpoint import load_checkpoint, save_checkpoint
    from mailnet.engine.rundir import checkpoint_from
    from mailnet.models import create_model

    from mailnet.models.mail import ROBUST_DEFAULTS

    tensors, meta = load_checkpoint(checkpoint_from(str(run)))
    kwargs = {**meta["model"]["kwargs"], **ROBUST_DEFAULTS}  # the MAIL run's checkpoint pins MAIL's noise-free ones
    torch.manual_seed(0)  # the random model's own weights: not whatever the tests before left in the global RNG
    robust = create_model("robust_mail", **kwargs)
    tensors = {k: v for k, v in tensors.items() if not k.startswith("model.")}
    tensors.update({f"model.{k}": v for k, v in robust.state_dict().items()})
    save_checkpoint(tmp_path / "robust.safetensors", tensors, {**meta, "model": {"name": "robust_mail", "kwargs": kwargs}})
    _breast_pngs(data_root, tmp_path / "imgs", 1)
    (tmp_path / "s.csv").write_text("breast\nimgs/b0.png\n")

    def probs(*extra: str) -> dict[str, str]:
        out = tmp_path / "o.csv"
        assert cli("predict", str(tmp_path / "robust.safetensors"), "--csv", str(tmp_path / "s.csv"),
                   "--partners", "2", "--out", str(out), *extra) == 0
        (row,) = read_csv(out)[1]
        return row

    first, again = probs("--draws", "3"), probs("--draws", "3", "--seed", "0")
    other = probs("--draws", "3", "--seed", "7")
    assert first == again and first["p_malignant"] != other["p_malignant"]
    assert first["draws"] == "3" and first["partners"] == "2"
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli("predict", "--help")
    helptext = " ".join(capsys.readouterr().out.split())
    assert "N, N+1, ..., N+draws-1" in helptext and "a deterministic model ignores it and --seed" in helptext


def test_a_non_square_image_is_said_to_be_stretched_once(tmp_path, monkeypatch):
    import warnings

    import mailnet
    from mailnet.data import images

    monkeypatch.setattr(images, "_stretch_warned", False)
    wide, wider, square = tmp_path / "wide.png", tmp_path / "wider.png", tmp_path / "square.png"
    Image.fromarray(np.zeros((20, 40), np.uint8)).save(wide)
    Image.fromarray(np.zeros((10, 50), np.uint8)).save(wider)
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(square)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mailnet.load_image(square, channels=1, size=28)
        assert not caught
        x = mailnet.load_image(wide, channels=1, size=28)
        mailnet.load_image(wider, channels=1, size=28)
    assert x.shape == (1, 1, 28, 28)
    (w,) = caught  # once per process, naming the first
    assert issubclass(w.category, MailnetWarning) and "wide.png is 40x20 (width x height): resized to 28x28" in \
        str(w.message)


@pytest.mark.parametrize("change", ["num_classes", "task_removed", "in_chans"])
def test_metadata_that_disagrees_with_its_model_is_refused(tmp_path, change):
    """Tasks or modalities in a checkpoint's metadata that its model does not have: predict indexed a missing head
    (a traceback) and export wrote a card for outputs the graph lacks; every command now refuses it in one line."""
    from mailnet.engine.checkpoint import save_checkpoint
    from mailnet.engine.runs import load_model
    from mailnet.errors import MailnetError
    from mailnet.models import create_model

    kwargs = {"widths": [8, 8, 16, 16], "stem": "cifar", "in_chans": [1, 1], "num_classes": [2, 2], "img_size": 28}
    model = create_model("mail", **kwargs)
    tasks = [{"name": "a", "task_type": "binary", "num_classes": 2}, {"name": "b", "task_type": "binary",
                                                                       "num_classes": 2}]
    mods = [{"name": "x", "in_chans": 1, "img_size": 28}, {"name": "y", "in_chans": 1, "img_size": 28}]
    path = tmp_path / "best.safetensors"
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    save_checkpoint(path, tensors, {"model": {"name": "mail", "kwargs": kwargs}, "tasks": tasks, "modalities": mods})
    assert load_model(path)[0] is not None  # the consistent file loads
    if change == "num_classes":
        tasks[0]["num_classes"] = 7
    elif change == "task_removed":
        tasks.pop()
    else:
        mods[1]["in_chans"] = 3
    save_checkpoint(path, tensors, {"model": {"name": "mail", "kwargs": kwargs}, "tasks": tasks, "modalities": mods})
    with pytest.raises(MailnetError) as info:
        load_model(path)
    text = str(info.value)
    assert "\n" not in text and str(path) in text and "metadata lists" in text
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(img)
    assert main(["predict", str(path), "--image", f"x={img}", "--image", f"y={img}"]) == 2
