"""docs/own-data.md is true: its config, on files laid out the way the page describes (real PneumoniaMNIST and
BreastMNIST images exported as PNGs), is described, trained, evaluated from another directory, used for a
prediction, exported, and loaded from Python with the names the page promises."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from mailnet.cli import main

DOC = Path(__file__).resolve().parents[1] / "docs" / "own-data.md"
TINY = ["train.epochs=1", "train.max_steps_per_epoch=2", "model.kwargs.widths=[8,8,16,16]", "eval.mc_samples=1",
        "eval.partner_draws=1"]


def doc_config() -> dict:
    (block,) = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    return yaml.safe_load(block)


def lay_out(project: Path, data_root: Path, per_split: dict[str, int]) -> None:
    """The two layouts of the page: an image folder with split folders, and a CSV manifest with a split column."""
    xray = np.load(data_root / "pneumoniamnist" / "pneumoniamnist.npz")
    names = ("normal", "pneumonia")
    for split, n in per_split.items():
        images, labels = xray[f"{split}_images"], xray[f"{split}_labels"].reshape(-1)
        for c, cname in enumerate(names):
            for i in np.flatnonzero(labels == c)[:n]:
                out = project / "xray" / split / cname / f"{split}{i:04d}.png"
                out.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(images[i]).save(out)
    us = np.load(data_root / "breastmnist" / "breastmnist.npz")
    rows = []
    for split, n in per_split.items():
        images, labels = us[f"{split}_images"], us[f"{split}_labels"].reshape(-1)
        for c in (0, 1):
            for i in np.flatnonzero(labels == c)[:n]:
                rel = f"images/{split}{i:04d}.png"
                (project / "us" / "images").mkdir(parents=True, exist_ok=True)
                Image.fromarray(images[i]).save(project / "us" / rel)
                rows.append([rel, c, split])
    with open(project / "us" / "breast.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        w.writerows(rows)


def test_the_own_data_page_works_as_written(tmp_path, data_root, monkeypatch, capsys):
    cfg = doc_config()
    assert [m["source"] for m in cfg["data"]["modalities"]] == ["folder", "csv"]
    project = tmp_path / "project"
    lay_out(project, data_root, {"train": 24, "val": 8, "test": 8})
    (project / "my_xray_us.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    monkeypatch.chdir(project)

    assert main(["data", "describe", "--config", "my_xray_us.yaml"]) == 0
    described = capsys.readouterr().out
    assert "xray" in described and "us" in described and "pneumonia" in described
    assert main(["data", "describe", "--config", "my_xray_us.yaml", "--decode"]) == 0
    assert "image files: all readable" in capsys.readouterr().out  # the page's --decode, on both file sources

    assert main(["train", "--config", "my_xray_us.yaml", *TINY, "--quiet", "--device", "cpu"]) == 0
    run = project / "runs" / "my_xray_us" / "mail" / "seed0"
    assert (run / "FINISHED").is_file()

    elsewhere = tmp_path / "elsewhere"  # "evaluating, attacking or resuming it later works from anywhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--device", "cpu"]) == 0
    assert "xray" in capsys.readouterr().out
    image = next((project / "xray" / "test" / "normal").iterdir())
    assert main(["predict", str(run), "--image", f"xray={image}", "--out", str(elsewhere / "pred.csv")]) == 0
    assert (elsewhere / "pred.csv").is_file()
    assert main(["export", str(run), "--onnx", str(elsewhere / "my_xray_us.onnx")]) == 0

    import torch

    import mailnet

    model = mailnet.create_model("mail", checkpoint_path=run)
    meta = model.checkpoint_meta
    assert [m["name"] for m in meta["modalities"]] == ["xray", "us"]
    assert [t["class_names"] for t in meta["tasks"]] == [["normal", "pneumonia"], ["benign", "malignant"]]
    logits = model([torch.rand(1, 3, 28, 28), torch.rand(1, 3, 28, 28)])
    assert [tuple(z.shape) for z in logits] == [(1, 2), (1, 2)]
    # mailnet.load_image reads a file as training did: the same tensor as the data pipeline's for that sample
    from mailnet.data import build_data, load_manifest
    from mailnet.engine.runs import load_config_of

    data = build_data(load_config_of(run)["data"], manifest=load_manifest(run / "manifest.json"))
    loaded = mailnet.load_image(image, channels=3, size=28)
    batch = next(iter(data.loader("test", 1024)))
    ids = data.sample_ids("test")[0]
    row = ids.index(str(image.relative_to(project / "xray")))
    assert loaded.shape == (1, 3, 28, 28) and torch.allclose(loaded[0], batch["images"][0][row], atol=1e-6)


def test_the_layouts_the_page_promises_to_check_fail_in_one_line(tmp_path, data_root, monkeypatch, capsys):
    """'data describe --config' is where the page sends a user to catch a bad layout before training."""
    cfg = doc_config()
    project = tmp_path / "project"
    lay_out(project, data_root, {"train": 4, "val": 2, "test": 2})
    (project / "my_xray_us.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    monkeypatch.chdir(project)
    rows = (project / "us" / "breast.csv").read_text().splitlines()
    (project / "us" / "breast.csv").write_text("\n".join(rows[:3] + ["images/none.png,1,train"] + rows[3:]) + "\n")
    capsys.readouterr()
    assert main(["data", "describe", "--config", "my_xray_us.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "none.png" in err
