"""Class weights for the training loss (``train.class_weights``)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from data_helpers import one_line
from mailnet.cli import main
from mailnet.config import load_config
from mailnet.data.types import TaskSpec
from mailnet.engine import class_weights
from mailnet.engine.evaluation import task_loss
from mailnet.errors import ConfigError


def _task(kind: str = "multi-class", k: int = 3) -> TaskSpec:
    return TaskSpec(name="t", task_type=kind, num_classes=k, class_names=tuple(f"c{i}" for i in range(k)))


def test_balanced_weights_are_n_over_k_times_the_class_count():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    (w,) = class_weights.resolve("balanced", [_task()], [labels])
    torch.testing.assert_close(w, torch.tensor([10 / 18, 10 / 9, 10 / 3]))
    # every class then carries the same total weight in the training labels
    totals = [float(w[c]) * int((labels == c).sum()) for c in range(3)]
    assert max(totals) - min(totals) < 1e-5
    # a class absent from the training labels weighs no row; it gets 1
    (w,) = class_weights.resolve("balanced", [_task(k=4)], [labels])
    assert float(w[3]) == 1.0
    # multi-label: BCE's pos_weight = negatives / positives per label
    ml = np.array([[1, 0], [1, 1], [0, 0], [1, 0]])
    (w,) = class_weights.resolve("balanced", [_task("multi-label", 2)], [ml])
    torch.testing.assert_close(w, torch.tensor([1 / 3, 3.0]))
    # a label positive in every row (or in none) keeps weight 1: pos_weight 0 would silence its positives
    (w,) = class_weights.resolve("balanced", [_task("multi-label", 3)], [np.array([[1, 0, 1], [1, 0, 0], [1, 0, 0]])])
    torch.testing.assert_close(w, torch.tensor([1.0, 1.0, 2.0]))


def test_the_weighted_loss_is_torchs_weighted_cross_entropy_over_the_rows_that_count():
    torch.manual_seed(0)
    logits, labels = torch.randn(8, 3), torch.tensor([0, 1, 2, 0, 0, 1, 2, 2])
    mask = torch.tensor([1, 1, 1, 1, 0, 1, 1, 0], dtype=torch.bool)
    w = torch.tensor([0.5, 2.0, 1.5])
    expected = F.cross_entropy(logits[mask], labels[mask], weight=w)
    torch.testing.assert_close(task_loss(logits, labels, mask, _task(), class_weight=w), expected)
    torch.testing.assert_close(task_loss(logits, labels, mask, _task()), F.cross_entropy(logits[mask], labels[mask]))
    assert float(task_loss(logits, labels, torch.zeros(8, dtype=torch.bool), _task(), class_weight=w)) == 0.0
    # multi-label: pos_weight as torch applies it
    y = torch.randint(0, 2, (8, 3)).float()
    expected = F.binary_cross_entropy_with_logits(logits[mask], y[mask], pos_weight=w, reduction="none").mean()
    torch.testing.assert_close(task_loss(logits, y, mask, _task("multi-label"), class_weight=w), expected)


def test_explicit_weights_and_bad_settings():
    tasks = [_task(k=2), _task(k=3)]
    labels = [np.array([0, 1, 1]), np.array([0, 1, 2])]
    a, b = class_weights.resolve([[1, 3], None], tasks, labels)
    assert a.tolist() == [1.0, 3.0] and b is None
    for bad, needles in (([[1, 3]], ("train.class_weights", "1 entries for 2 tasks")),
                         ([[1, 2, 3], None], ("train.class_weights[0]", "3 weights for task 't'", "2 classes"))):
        with pytest.raises(ConfigError) as e:
            class_weights.resolve(bad, tasks, labels)
        one_line(e, *needles)
    base = {"data": {"mode": "unpaired", "modalities": []}}
    for bad, needle in (("inverse", "train.class_weights: must be null, 'balanced'"),
                        ("[[1, 0], null]", "train.class_weights[0]: must be null"),
                        ("[[1, .nan]]", "train.class_weights[0]"), ("[[true, 1]]", "train.class_weights[0]")):
        with pytest.raises(ConfigError) as e:
            load_config(base, [f"train.class_weights={bad}"])
        one_line(e, needle)


def test_a_run_with_balanced_weights_trains_on_them_and_records_them(tmp_path, data_root, capsys, monkeypatch):
    """BreastMNIST's training labels are 27% malignant (class 0) and 73% normal or benign (class 1): balanced
    weights lift the minority class, and the run says which weights it used."""
    cfg = {
        "name": "cw", "seed": 0,
        "model": {"name": "resnet18_late_fusion", "kwargs": {"stem": "cifar"}},
        "data": {"mode": "unpaired", "size": 28, "equalize": "none", "subset": {"train": 96, "val": 32, "test": 32},
                 "modalities": [{"name": "breast", "source": "medmnist", "flag": "breastmnist", "channels": 1},
                                {"name": "pneumonia", "source": "medmnist", "flag": "pneumoniamnist", "channels": 1}]},
        "train": {"epochs": 1, "batch_size": 32, "max_steps_per_epoch": 1, "class_weights": ["balanced", None]},
        "eval": {"batch_size": 64, "mc_samples": 1, "partner_draws": 1, "partner_bank": 2},
    }
    path = tmp_path / "cw.yaml"
    path.write_text(yaml.safe_dump(cfg))
    import mailnet.engine.trainer as trainer

    seen = []  # the weights the training loss was given, per call: (task, weights or None)

    def spy(logits, labels, mask, task, reduction="mean", class_weight=None):
        seen.append((task.name, None if class_weight is None else class_weight.tolist()))
        return task_loss(logits, labels, mask, task, reduction, class_weight)

    monkeypatch.setattr(trainer, "task_loss", spy)
    run = tmp_path / "run"
    assert main(["train", "--config", str(path), "--run-dir", str(run), "--data-root", str(data_root),
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "class weights (training loss): breast [" in out and "pneumonia [" not in out.split("class weights")[1]
    from mailnet.engine.runs import load_run

    _, data, _ = load_run(run)
    counts = np.bincount(data.labels("train")[0], minlength=2)
    recorded = json.loads((run / "test_metrics.json").read_text())["train_class_weights"]
    assert list(recorded) == ["breast"]
    np.testing.assert_allclose(recorded["breast"], counts.sum() / (2 * counts), rtol=1e-6)
    assert seen and {name for name, _ in seen} == {"breast", "pneumonia"}
    assert all(w == pytest.approx(recorded["breast"]) for name, w in seen if name == "breast")
    assert all(w is None for name, w in seen if name == "pneumonia")
    assert data.tasks[0].class_names[0] == "malignant"
    assert recorded["breast"][0] > 1 > recorded["breast"][1]  # the malignant minority weighs more
