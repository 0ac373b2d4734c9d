"""Engine pieces that need no data: metrics vs medmnist's definitions, checkpoints, config validation."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mailnet.config import load_config
from mailnet.data.types import TaskSpec
from mailnet.engine.checkpoint import join_state, load_checkpoint, save_checkpoint, split_state
from mailnet.engine.metrics import task_metrics
from mailnet.errors import ConfigError, MailnetError


def _probs(rng, n, k):
    z = rng.normal(size=(n, k))
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("task_type,medmnist_task,k", [
    ("binary", "binary-class", 2),
    ("multi-class", "multi-class", 5),
    ("ordinal", "ordinal-regression", 5),
])
def test_acc_auc_match_medmnist(task_type, medmnist_task, k):
    from medmnist.evaluator import getACC, getAUC

    rng = np.random.default_rng(0)
    labels = rng.integers(0, k, size=300)
    probs = _probs(rng, 300, k)
    probs[labels == 1, 1] += 0.3  # some signal, so AUC is not 0.5
    probs /= probs.sum(1, keepdims=True)
    m = task_metrics(labels, probs, TaskSpec("t", task_type, k))
    assert m["acc"] == pytest.approx(getACC(labels, probs, medmnist_task))
    assert m["auc"] == pytest.approx(getAUC(labels, probs, medmnist_task))
    assert 0 <= m["ece"] <= 1 and m["n"] == 300


def test_multilabel_matches_medmnist():
    from medmnist.evaluator import getACC, getAUC

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, size=(200, 4))
    probs = np.clip(labels * 0.3 + rng.uniform(size=(200, 4)) * 0.7, 0, 1)
    m = task_metrics(labels, probs, TaskSpec("t", "multi-label", 4))
    assert m["acc"] == pytest.approx(getACC(labels, probs, "multi-label, binary-class"))
    assert m["auc"] == pytest.approx(getAUC(labels, probs, "multi-label, binary-class"))


def test_ece_of_a_calibrated_and_an_overconfident_model():
    rng = np.random.default_rng(2)
    conf = rng.uniform(0.5, 1.0, size=20000)
    correct = rng.uniform(size=20000) < conf  # calibrated by construction
    labels = np.where(correct, 1, 0)
    probs = np.stack([1 - conf, conf], 1)
    calibrated = task_metrics(labels, probs, TaskSpec("t", "multi-class", 2))["ece"]
    over = task_metrics(labels, np.stack([np.zeros_like(conf), np.ones_like(conf)], 1),
                        TaskSpec("t", "multi-class", 2))["ece"]
    assert calibrated < 0.02
    assert over == pytest.approx(1 - correct.mean(), abs=1e-6)


def test_checkpoint_roundtrip_with_optimizer_state(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(8, 3)).sum().backward()
    opt.step()
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_json = split_state(opt.state_dict(), "optim", tensors)
    save_checkpoint(tmp_path / "c.safetensors", tensors, {"optimizer": opt_json, "note": "x"})
    loaded, meta = load_checkpoint(tmp_path / "c.safetensors")
    assert meta["note"] == "x" and json.loads((tmp_path / "c.json").read_text())["note"] == "x"
    opt2 = torch.optim.Adam(model.parameters(), lr=0.5)
    opt2.load_state_dict(join_state(meta["optimizer"], loaded))
    assert opt2.param_groups[0]["lr"] == 0.01
    for a, b in zip(opt.state.values(), opt2.state.values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"])
    assert not list(tmp_path.glob("*.tmp"))


def test_checkpoint_rejects_corrupt_and_foreign_files(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00\x01garbage")
    with pytest.raises(MailnetError, match="bad.safetensors"):
        load_checkpoint(bad)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(MailnetError, match="no mailnet metadata"):
        load_checkpoint(tmp_path / "foreign.safetensors")
    with pytest.raises(MailnetError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_config_rejects_unknown_keys_and_bad_values(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {mode: unpaired}\ntrain: {epochs: 2}\n")
    assert load_config(cfg, ["train.lr=0.01"])["train"]["lr"] == 0.01
    with pytest.raises(ConfigError, match="train.epoch: unknown config key"):
        load_config(cfg, ["train.epoch=3"])
    with pytest.raises(ConfigError, match="train.optimizer"):
        load_config(cfg, ["train.optimizer=adagrad"])
    assert load_config(cfg, ["train.amp=off"])["train"]["amp"] == "off"  # YAML's bare off is false
    with pytest.raises(ConfigError, match="train.amp: True is not one of auto, off"):
        load_config(cfg, ["train.amp=on"])
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config(cfg, ["train.epochs=0"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(cfg, ["train.epochs"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def _later_key_is_validated_and_hashes_like_before_when_off(tmp_path, key: str, bad: tuple, match: str, on: str):
    """A config key added after results were stored: bad values fail with ``match``; left at its default it hashes
    like a config resolved before the key existed (so stored results stay found); set, it hashes differently."""
    from mailnet.bench.hashing import config_hash

    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {mode: unpaired}\ntrain: {epochs: 4}\n")
    for value in bad:
        with pytest.raises(ConfigError, match=match):
            load_config(cfg, [f"train.{key}={value}"])
    off, on_cfg = load_config(cfg), load_config(cfg, [f"train.{key}={on}"])
    before = load_config(cfg)
    del before["train"][key]
    assert config_hash(off) == config_hash(before) != config_hash(on_cfg)
    return off, on_cfg


def test_noise_warmup_key_is_validated_and_hashes_like_before_when_off(tmp_path):
    from mailnet.engine.trainer import noise_warmup_scale

    off, _ = _later_key_is_validated_and_hashes_like_before_when_off(
        tmp_path, "noise_warmup", ("-1", "5", "true", "soon"),
        "train.noise_warmup: must be a number of epochs between 0 and", "2")
    assert off["train"]["noise_warmup"] == 0  # hashing does not mutate the config
    assert [noise_warmup_scale(e, 2) for e in (0, 0.5, 1, 2, 3)] == [0.0, 0.25, 0.5, 1.0, 1.0]
    assert noise_warmup_scale(0, 0) == 1.0


def test_time_limit_key_is_validated_and_hashes_like_before_when_off(tmp_path):
    _, on = _later_key_is_validated_and_hashes_like_before_when_off(
        tmp_path, "time_limit", ("0", "-5", "true", "soon"),
        "train.time_limit: must be a positive number of seconds", "300")
    assert on["train"]["time_limit"] == 300
