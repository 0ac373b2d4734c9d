"""Engine pieces that need no data: metrics vs medmnist's definitions, checkpoints, config validation."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mailnet.config import load_config
from mailnet.data.types import TaskSpec
from mailnet.engine.checkpoint import join_state, load_checkpoint, save_checkpoint, split_state, tensors_fingerprint
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



def test_macro_f1_ignores_classes_that_occur_nowhere():
    """A class absent from the labels and never predicted (a subset of a rare class) must not count as F1 = 0."""
    labels = np.array([0, 0, 1, 1, 2, 2])
    perfect = np.eye(4)[labels]  # 4 classes, class 3 nowhere
    m = task_metrics(labels, perfect, TaskSpec("t", "multi-class", 4))
    assert m["acc"] == m["bal_acc"] == m["f1"] == 1.0
    wrong = np.eye(4)[[0, 0, 1, 1, 2, 3]]  # class 3 predicted once: it counts (F1 0), and class 2 has F1 2/3
    assert task_metrics(labels, wrong, TaskSpec("t", "multi-class", 4))["f1"] == pytest.approx((1 + 1 + 2 / 3 + 0) / 4)
    multi = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]])  # label 2 never positive, never predicted
    assert task_metrics(multi, multi.astype(float), TaskSpec("t", "multi-label", 3))["f1"] == 1.0

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


def test_fingerprint_follows_the_tensors_not_the_metadata(tmp_path):
    tensors = {"w": torch.arange(6, dtype=torch.float32).view(2, 3), "step": torch.tensor(3), "b": torch.zeros(0)}
    save_checkpoint(tmp_path / "a.safetensors", tensors, {"epoch": 1})
    save_checkpoint(tmp_path / "b.safetensors", dict(reversed(list(tensors.items()))), {"epoch": 2, "x": "y"})
    same = tensors_fingerprint(tmp_path / "a.safetensors")
    assert same == tensors_fingerprint(tmp_path / "b.safetensors")
    for change in ({"w": tensors["w"].clone().index_put_((torch.tensor(0), torch.tensor(0)), torch.tensor(1e-7))},
                   {"w": tensors["w"].view(3, 2)}, {"w": tensors["w"].double()}, {"w2": tensors["w"]}):
        other = {k: v for k, v in tensors.items() if not (k == "w" and "w2" in change)} | change
        save_checkpoint(tmp_path / "c.safetensors", other, {"epoch": 1})
        assert tensors_fingerprint(tmp_path / "c.safetensors") != same, sorted(change)


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


def test_a_checkpoint_from_a_newer_format_is_refused_in_one_line(tmp_path):
    """``"format": 99`` loaded silently: a newer mailnet may store its state in a way this one misreads."""
    from mailnet.engine.checkpoint import FORMAT_VERSION

    tensors = {"w": torch.ones(2)}
    save_checkpoint(tmp_path / "now.safetensors", tensors, {"epoch": 1})
    assert load_checkpoint(tmp_path / "now.safetensors")[1]["format"] == FORMAT_VERSION
    for fmt, needle in ((FORMAT_VERSION + 98, f"checkpoint format {FORMAT_VERSION + 98} is newer than this mailnet "
                                              f"supports (format {FORMAT_VERSION}); upgrade mailnet to load it"),
                        ("2", "the checkpoint's metadata has format '2', expected a positive integer")):
        path = tmp_path / "other.safetensors"
        save_checkpoint(path, tensors, {"format": fmt, "epoch": 1})
        with pytest.raises(MailnetError) as e:
            load_checkpoint(path)
        assert str(e.value) == f"{path}: {needle}"


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


@pytest.mark.parametrize("override, message", [
    ("=3", "override '=3': the key before '=' is empty; expected KEY=VALUE, e.g. train.epochs=3"),
    (" =3", "override ' =3': the key before '=' is empty; expected KEY=VALUE, e.g. train.epochs=3"),
    ("train..epochs=3", "override 'train..epochs=3': the key 'train..epochs' has an empty part between its dots"),
    ("train.=3", "override 'train.=3': the key 'train.' has an empty part between its dots"),
])
def test_an_override_with_an_empty_key_is_quoted(tmp_path, override, message):
    """``=3`` used to read ``: unknown config key``, naming nothing."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {mode: unpaired}\n")
    with pytest.raises(ConfigError) as e:
        load_config(cfg, [override])
    assert str(e.value) == message


def test_config_reads_exponents_without_a_dot_as_numbers(tmp_path):
    """YAML 1.1 reads 1e-3 as text; the way everyone writes a learning rate must work in files and overrides."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {mode: unpaired}\ntrain: {lr: 1e-3, weight_decay: 5E-4}\n")
    resolved = load_config(cfg, ["train.grad_clip=1e+1"])
    assert resolved["train"]["lr"] == 0.001 and resolved["train"]["weight_decay"] == 0.0005
    assert resolved["train"]["grad_clip"] == 10.0
    assert load_config(cfg, ["train.adv.eps=4/255"])["train"]["adv"]["eps"] == "4/255"  # text stays text
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


@pytest.mark.parametrize("override, match", [
    ("seed=abc", "seed: must be an integer >= 0"),
    ("train.epochs=true", "train.epochs: must be an integer >= 1"),  # YAML true is not a count
    ("train.batch_size=2.5", "train.batch_size: must be an integer"),
    ("train.weight_decay=abc", "train.weight_decay: must be a number >= 0"),
    ("train.grad_clip=abc", r"train.grad_clip: must be a number > 0 \(or null\)"),
    ("train.early_stopping=soon", "train.early_stopping"),
    ("train.max_steps_per_epoch=abc", "train.max_steps_per_epoch"),
    ("train.milestones=abc", "train.milestones: must be a list of fractions"),
    ("train.milestones=[0.5,2]", "train.milestones"),
    ("train.loss_weights=3", "train.loss_weights: must be a list of non-negative numbers"),
    ("train.adv.method=madry", "train.adv.method: 'madry' is not one of pgd, fgsm-rs"),
    ("train.adv.steps=0", "train.adv.steps: must be an integer >= 1"),
    ("eval.mc_samples=0", "eval.mc_samples: must be an integer >= 1"),
    ("eval.batch_size=abc", "eval.batch_size"),
    ("name=[1,2]", "name: must be a string"),
    ("output.dir=null", "output.dir: must be a folder path"),
    ("model.kwargs=[1]", "model.kwargs: must be a mapping"),
])
def test_config_checks_type_and_range_of_every_scalar(tmp_path, override, match):
    """Each of these used to pass validation and fail later as a traceback (eval.mc_samples=0 only after a whole
    training run, in the final evaluation, and again on every resume since the value is saved with the run)."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {mode: unpaired}\ntrain: {epochs: 2}\n")
    with pytest.raises(ConfigError, match=match):
        load_config(cfg, [override])


def test_config_adversarial_budget_is_read_before_anything_runs(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {mode: unpaired}\n")
    with pytest.raises(ConfigError, match="train.adv.eps: cannot read 'abc' as an epsilon"):
        load_config(cfg, ["train.adv.method=pgd", "train.adv.eps=abc"])
    ok = load_config(cfg, ["train.adv.method=fgsm-rs", "train.adv.eps=4/255", "train.epochs=3.0"])
    assert ok["train"]["epochs"] == 3 and isinstance(ok["train"]["epochs"], int)
    assert load_config(cfg, ["train.adv.eps=abc"])["train"]["adv"]["method"] is None  # unused while off


def test_run_directory_of_a_run_that_never_finished_an_epoch_is_reused(tmp_path):
    """A run killed in its first epoch leaves config, manifest and an empty checkpoints/ folder: nothing to resume
    and nothing worth keeping, so the same command starts it again there; after an epoch it is protected."""
    from mailnet.engine import rundir

    run = tmp_path / "run"
    rundir.prepare(run)
    (run / "config.yaml").write_text("x")
    (run / "manifest.json").write_text("{}")
    rundir.init_path(run).write_text("{}")  # a run started from another's weights (model.init_from)
    assert rundir.never_trained(run)
    rundir.prepare(run)  # no error
    rundir.last_path(run).write_bytes(b"weights")
    with pytest.raises(MailnetError, match="resume it with `mailnet train --resume RUN_DIR`"):
        rundir.prepare(run)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(MailnetError, match="not empty"):
        rundir.prepare(other)


def test_checkpoint_with_foreign_metadata_or_wrong_shapes_fails_in_one_line(tmp_path):
    from safetensors.torch import save_file

    from mailnet.engine.runs import load_model
    from mailnet.models import create_model

    def write(name, tensors, meta):
        path = tmp_path / name
        save_file(tensors, str(path), metadata={"mailnet": json.dumps(meta)})
        return path

    with pytest.raises(MailnetError, match="metadata is not a JSON object"):
        load_checkpoint(write("list.safetensors", {"w": torch.zeros(1)}, [1, 2]))
    with pytest.raises(MailnetError, match="no model description"):
        load_model(write("nokw.safetensors", {"w": torch.zeros(1)}, {"model": {"name": "resnet18_single"}}))
    spec = {"name": "resnet18_late_fusion", "kwargs": {"in_chans": [1, 1], "num_classes": [2, 2], "img_size": 28}}
    with pytest.raises(MailnetError, match="cannot rebuild model"):
        load_model(write("kw.safetensors", {"w": torch.zeros(1)},
                         {"model": {**spec, "kwargs": {**spec["kwargs"], "colour": 3}}}))
    weights = {f"model.{k}": v.clone() for k, v in create_model(spec["name"], **spec["kwargs"]).state_dict().items()}
    key = next(k for k, v in weights.items() if v.dim() == 4)
    weights[key] = torch.zeros(3, 3, 3, 3)
    with pytest.raises(MailnetError, match=r"shape.safetensors: weights do not fit model 'resnet18_late_fusion' \("):
        load_model(write("shape.safetensors", weights, {"model": spec}))


def test_written_files_get_the_usual_permissions(tmp_path):
    import os

    from mailnet.utils import write_json

    write_json(tmp_path / "m.json", {"a": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o666 & ~mask


class _PositionModality:
    """A toy modality whose 'image' of a sample is its position (1 value), so a model can tell samples apart."""

    def load(self, split, pos):
        return torch.as_tensor(pos, dtype=torch.float32).reshape(-1, 1)


class _ToyUnpaired:
    """Two unpaired modalities of 9 and 4 test samples, one task each, served by the real eval plan."""

    paired = False

    def __init__(self):
        from mailnet.data.dataset import TaskRuntime

        self.sizes = [9, 4]
        self.modalities = [_PositionModality(), _PositionModality()]
        self.runtime = [TaskRuntime(TaskSpec("a", "multi-class", 3, modality=0), {"test": np.arange(9) % 3}),
                        TaskRuntime(TaskSpec("b", "binary", 2, modality=1), {"test": np.arange(4) % 2})]
        self.tasks = [t.spec for t in self.runtime]

    def loader(self, split, batch_size, *, shuffle=False, partner_seed=None, keep_modality=None, rank=0,
               world_size=1):
        from mailnet.data.dataset import PlanDataset
        from mailnet.data.plan import shard, unpaired_eval_plan

        plan = unpaired_eval_plan(self.sizes, partner_seed=partner_seed, keep=keep_modality)
        ds = PlanDataset(self.modalities, self.runtime, shard(plan, rank, world_size, pad_counts=False), split,
                         seed=0, epoch=0, train=False)
        return [ds[list(range(i, min(i + batch_size, len(ds))))] for i in range(0, len(ds), batch_size)]


def test_partner_sensitivity_counts_partner_effects_not_the_models_own_noise():
    """A random model whose answers ignore the partners must score 0 (the noise is held to each sample), and a
    deterministic model whose answers depend on the partner must score above 0."""
    import torch.nn as nn

    from mailnet.engine.evaluation import evaluate
    from mailnet.layers.noise import Dropout, seed_noise

    class NoiseOnly(nn.Module):  # each head's answer is MC-dropout noise: random, but blind to every input
        def __init__(self):
            super().__init__()
            self.drop = Dropout(0.5, mc=True)

        def seed_noise(self, seed, device=None):
            return seed_noise(self, seed, device)

        def forward(self, xs):
            return [self.drop(torch.ones(len(xs[0]), 3)) + 0 * xs[0], self.drop(torch.ones(len(xs[1]), 2)) + 0 * xs[1]]

    class PartnerDriven(nn.Module):  # head a reads only modality 1 (the partner), head b only modality 1 (its own)
        def forward(self, xs):
            p = xs[1] % 3
            return [torch.cat([p == 0, p == 1, p == 2], dim=1).float(), torch.cat([xs[1] % 2, 1 - xs[1] % 2], 1)]

    data = _ToyUnpaired()
    noisy = evaluate(NoiseOnly(), data, "test", torch.device("cpu"), batch_size=4, mc_samples=4, partner_draws=4)
    assert noisy["stochastic"] and noisy["partner_sensitivity"] == {"a": 0.0, "b": 0.0}
    driven = evaluate(PartnerDriven(), data, "test", torch.device("cpu"), batch_size=4, partner_draws=4)
    assert not driven["stochastic"]
    assert driven["partner_sensitivity"]["a"] > 0.3 and driven["partner_sensitivity"]["b"] == 0.0


def test_multistep_milestones_that_meet_on_one_epoch_both_decay():
    from mailnet.engine.optim import build_scheduler

    def rates(epochs: int) -> list[float]:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = build_scheduler(opt, {"schedule": "multistep", "epochs": epochs, "gamma": 0.1,
                                      "milestones": [0.5, 0.75]})
        out = []
        for _ in range(epochs):
            out.append(round(opt.param_groups[0]["lr"], 6))
            opt.step()
            sched.step()
        return out

    assert rates(3) == [1.0, 1.0, 0.01]  # 1.5 and 2.25 both round to epoch 2: two decays, not one
    assert rates(8) == [1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01]


def test_model_selection_survives_nan_scores():
    from mailnet.engine.trainer import is_better

    nan = float("nan")
    assert is_better(nan, None) and is_better(0.5, None)  # the first epoch always gives a best checkpoint
    assert is_better(0.6, 0.5) and not is_better(0.5, 0.5) and not is_better(0.4, 0.5)
    assert is_better(0.1, nan) and not is_better(nan, 0.5) and not is_better(nan, nan)


def test_predict_reads_an_image_file_exactly_as_training_does(tmp_path):
    """A 16-bit PNG is scaled by 65535 in training; prediction used to clip it to 8 bits (60000 -> 1.0)."""
    from PIL import Image

    from mailnet.data.image_files import read_image
    from mailnet.data.images import prepare
    from mailnet.data.types import ModalitySpec
    from mailnet.engine.predict import Predictor

    arr = np.full((6, 6), 60000, dtype=np.uint16)
    arr[0, 0] = 1000
    Image.fromarray(arr).save(tmp_path / "x16.png")
    pred = Predictor(model=None, modalities=[ModalitySpec(name="a", in_chans=3, img_size=4)], tasks=[],
                     paired=False, bank={}, device=torch.device("cpu"))
    got = pred.load_image(tmp_path / "x16.png", 0)
    want = prepare([read_image(tmp_path / "x16.png")], channels=3, size=4)[0]
    assert got.shape == (3, 4, 4) and torch.equal(got, want)
    assert got.max() == pytest.approx(60000 / 65535, abs=1e-4)


def test_metrics_of_a_split_missing_a_class_warn_nothing_and_say_why_the_auc_is_nan():
    """sklearn used to print multi-line warnings ('Only one class is present in y_true', 'y_pred contains classes
    not in y_true') on every evaluation; the numbers stay as they were and a note says why the AUC is nan."""
    import warnings

    one_class = np.zeros(6, dtype=np.int64)
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4], [0.3, 0.7], [0.8, 0.2]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = task_metrics(one_class, probs, TaskSpec("breast", "binary", 2))
        three = task_metrics(np.array([0, 0, 1, 1]), np.eye(3)[[0, 2, 1, 1]], TaskSpec("pets", "multi-class", 3,
                                                                                         ("cat", "dog", "emu")))
        fine = task_metrics(np.array([0, 1, 0, 1]), probs[:4], TaskSpec("ok", "binary", 2))
        never = np.array([[1, 0], [0, 0], [1, 0]])  # label 'b' never positive, never predicted
        multi = task_metrics(never, never.astype(float), TaskSpec("ml", "multi-label", 2, ("a", "b")))
    assert [str(w.message) for w in caught] == []
    assert np.isnan(m["auc"]) and m["auc_note"] == "only one class present"
    assert m["acc"] == pytest.approx(4 / 6) and m["bal_acc"] == pytest.approx(4 / 6)  # the values are unchanged
    assert np.isnan(three["auc"]) and three["auc_note"] == "no sample of class(es) 'emu'"
    assert three["acc"] == pytest.approx(0.75)
    assert not np.isnan(fine["auc"]) and "auc_note" not in fine
    assert np.isnan(multi["auc"]) and multi["auc_note"] == "label(s) 'b' all 0 or all 1" and multi["bal_acc"] == 1.0


def test_metrics_table_explains_a_nan_auc_once_in_a_footnote():
    from mailnet.engine.report import metrics_table

    nan = float("nan")
    row = {"acc": 0.5, "f1": 0.4, "bal_acc": 0.5, "ece": 0.1, "n": 6}
    result = {"split": "test", "tasks": {"pneumonia": {**row, "auc": 0.9},
                                         "breast": {**row, "auc": nan, "auc_note": "only one class present"}}}
    lines = metrics_table(result, title="test metrics").splitlines()
    assert lines[-1] == "AUC n/a: only one class present in breast's test split"
    assert sum("AUC n/a" in line for line in lines) == 1
    assert "nan" in next(line for line in lines if line.startswith("breast"))  # the number itself is unchanged
    del result["tasks"]["breast"]
    assert "AUC n/a" not in metrics_table(result)


def test_an_unknown_model_kwarg_names_the_config_key_and_the_allowed_arguments():
    from mailnet.engine.trainer import build_model

    shapes = {"in_chans": [1], "num_classes": [2], "img_size": 16}
    for name, allowed in (("mail", "drop_rate, fast, groups"), ("resnet18_single", "mc_dropout, num_classes, stem")):
        with pytest.raises(ConfigError) as e:
            build_model({"name": name, "kwargs": {**shapes, "width": 3}})
        msg = str(e.value)
        assert msg.startswith(f"model.kwargs: {name}: unknown argument(s) width (allowed: ") and allowed in msg, msg
        assert "\n" not in msg and ("widths" in msg) == (name == "mail")


def test_a_yaml_syntax_error_names_its_line_and_column(tmp_path):
    cfg = tmp_path / "yamlerr.yaml"
    cfg.write_text("seed: 0\ndata: {mode: unpaired,\n  size: 28\ntrain: {epochs: 1}\n")
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert str(e.value) == (f"{cfg}: line 4, column 6: not valid YAML (expected ',' or '}}', but got ':'; "
                            "while parsing a flow mapping that started on line 2)")



def test_a_key_given_twice_is_an_error_not_the_last_one_wins(tmp_path):
    cfg = tmp_path / "dup.yaml"
    cfg.write_text("seed: 0\ntrain: {lr: 1e-3, epochs: 3, lr: 5e-2}\n")
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert str(e.value) == f"{cfg}: line 2, column 30: not valid YAML (duplicate key 'lr'; while reading a mapping)"
    cfg.write_text("train:\n  lr: 1.0e-3\nseed: 0\ntrain:\n  epochs: 2\n")
    with pytest.raises(ConfigError, match="line 4, column 1: not valid YAML .duplicate key 'train'"):
        load_config(cfg)
    # a merge key (<<: *anchor) may still be overridden: that is what it is for
    cfg.write_text("x: &base {epochs: 1, lr: 1.0e-3}\ntrain:\n  <<: *base\n  lr: 5.0e-2\n")
    from mailnet.config import read_yaml_mapping

    assert read_yaml_mapping(cfg)["train"] == {"epochs": 1, "lr": 5.0e-2}

def test_the_epoch_progress_bar_counts_the_steps_that_will_run():
    """With train.max_steps_per_epoch the bar used to show the loader's length (stopping at '3/8')."""
    from mailnet.engine.trainer import _progress

    bar = _progress(list(range(8)), True, "epoch 1/1", total=3)
    assert bar.total == 3
    bar.close()
    assert _progress([1, 2], False, "x", total=2) == [1, 2]


def test_the_recorded_commit_is_the_running_sources_whatever_the_working_directory(tmp_path, monkeypatch):
    """A bench run from /tmp reported 'unknown (not a git checkout)' while the code that ran was a checkout."""
    import subprocess

    import mailnet
    from mailnet.environment import git_commit, machine_info

    from pathlib import Path

    source = Path(mailnet.__file__).resolve().parent
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True).returncode != 0:
        pytest.skip("mailnet is not running from a git checkout here")
    monkeypatch.chdir(tmp_path)
    assert git_commit() is None  # the working directory is not a checkout...
    assert machine_info("cpu")["git_commit"] == git_commit(source)  # ...the running source is
