"""End-to-end training on small real-data subsets: the run directory, resume after a kill, determinism,
evaluate / predict from the results, and a 2-process torchrun run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from mailnet.cli import main

TINY = {
    "name": "tiny",
    "seed": 0,
    "model": {"name": "mail", "kwargs": {"widths": [16, 32, 64, 128], "stem": "cifar"}},
    "data": {
        "mode": "unpaired",
        "size": 28,
        "equalize": "repeat",
        "subset": {"train": 160, "val": 48, "test": 64},
        "modalities": [
            {"name": "pneumonia", "source": "medmnist", "flag": "pneumoniamnist", "channels": 1},
            {"name": "breast", "source": "medmnist", "flag": "breastmnist", "channels": 1},
        ],
    },
    "train": {"epochs": 3, "batch_size": 32, "lr": 0.002},
    "eval": {"batch_size": 64, "mc_samples": 2, "partner_draws": 2, "partner_bank": 4},
}


def write_cfg(tmp_path: Path, **changes) -> Path:
    cfg = json.loads(json.dumps(TINY))
    for k, v in changes.items():
        node = cfg
        *head, last = k.split(".")
        for h in head:
            node = node[h]
        node[last] = v
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli(*args: str) -> int:
    return main(list(args))


def test_train_writes_a_complete_run_directory(tmp_path, data_root, capsys):
    cfg = write_cfg(tmp_path)
    run = tmp_path / "run"
    assert cli("train", "--config", str(cfg), "--run-dir", str(run), "--data-root", str(data_root), "--quiet",
               "--device", "cpu") == 0
    out = capsys.readouterr().out
    assert "pneumonia" in out and "breast" in out and "AUC" in out
    for f in ("config.yaml", "manifest.json", "metrics.csv", "metrics.json", "test_metrics.json",
              "checkpoints/best.safetensors", "checkpoints/best.json", "checkpoints/last.safetensors",
              "predictions_test.csv", "plots/curves.png", "plots/confusion_pneumonia.png",
              "plots/roc_breast.png", "FINISHED"):
        assert (run / f).is_file(), f
    history = json.loads((run / "metrics.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3]
    test = json.loads((run / "test_metrics.json").read_text())
    # every modality is scored on its whole (here: subset) test split, each sample once
    assert test["tasks"]["pneumonia"]["n"] == 64 and test["tasks"]["breast"]["n"] == 64
    assert 0.0 <= test["tasks"]["pneumonia"]["acc"] <= 1.0
    assert set(test["partner_sensitivity"]) == {"pneumonia", "breast"}
    assert not list(run.rglob("*.tmp"))
    # where and with what it ran, for whoever reads (or harvests) the run later
    (sitting,) = json.loads((run / "environment.json").read_text())["sittings"]
    assert sitting["resumed"] is False and sitting["world_size"] == 1 and sitting["device"] == "cpu"
    assert sitting["versions"]["torch"] and sitting["cpu"] and sitting["date"].endswith("UTC")

    # refuses to overwrite a run
    assert cli("train", "--config", str(cfg), "--run-dir", str(run), "--data-root", str(data_root), "--quiet") == 2

    # evaluate reproduces the training's test metrics from the saved checkpoint and manifest
    assert cli("evaluate", str(run), "--data-root", str(data_root), "--device", "cpu") == 0
    again = json.loads((run / "eval_test.json").read_text())
    for task in ("pneumonia", "breast"):
        assert again["tasks"][task]["acc"] == pytest.approx(test["tasks"][task]["acc"])
        assert again["tasks"][task]["auc"] == pytest.approx(test["tasks"][task]["auc"])

    # predict one image; the missing modality is filled from the partner bank and the output says so
    from PIL import Image

    arr = np.load(data_root / "pneumoniamnist" / "pneumoniamnist.npz")["test_images"][0]
    Image.fromarray(arr).save(tmp_path / "x.png")
    capsys.readouterr()
    assert cli("predict", str(run), "--image", f"pneumonia={tmp_path / 'x.png'}") == 0
    out = capsys.readouterr().out
    assert "breast not given" in out and "pneumonia: predicted " in out and "breast:" not in out
    shown = out.strip().splitlines()[-1].split(": predicted ")[1]  # "NAME  (normal=0.1  pneumonia=0.9)"
    probs = {tok.split("=")[0]: float(tok.split("=")[1]) for tok in shown.split("(")[1].rstrip(")").split()}
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-3)
    assert shown.split("  (")[0] == max(probs, key=probs.get)  # the predicted class is named
    assert cli("predict", str(run), "--image", f"retina={tmp_path / 'x.png'}") == 2

    # batch mode: a folder of images for one modality, and a CSV naming images per modality
    folder = tmp_path / "imgs"
    folder.mkdir()
    breast = np.load(data_root / "breastmnist" / "breastmnist.npz")["test_images"]
    for i in range(3):
        Image.fromarray(breast[i]).save(folder / f"b{i}.png")
    assert cli("predict", str(run), "--folder", str(folder), "--modality", "breast",
               "--out", str(tmp_path / "p.csv")) == 0
    import csv

    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == [str(folder / f"b{i}.png") for i in range(3)]
    assert all(r["task"] == "breast" and r["filled_from_partner_bank"] == "pneumonia" for r in rows)
    assert all(r["pred_name"] == ["malignant", "normal, benign"][int(r["pred"])] for r in rows)
    (tmp_path / "s.csv").write_text("pneumonia,breast\nx.png,imgs/b0.png\n")
    assert cli("predict", str(run), "--csv", str(tmp_path / "s.csv"), "--out", str(tmp_path / "q.csv")) == 0
    with open(tmp_path / "q.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["task"] for r in rows) == ["breast", "pneumonia"]
    assert {r["id"] for r in rows} == {"x.png;imgs/b0.png"}

    # a run saved before a config key existed (here train.noise_warmup) still loads: the key takes its default
    from mailnet.engine.runs import load_config_of
    from mailnet.errors import ConfigError

    saved = yaml.safe_load((run / "config.yaml").read_text())
    del saved["train"]["noise_warmup"]
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    assert load_config_of(run)["train"]["noise_warmup"] == 0
    saved["train"]["epochs"] = 0
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(ConfigError, match=r"config.yaml: train.epochs: must be an integer >= 1"):
        load_config_of(run)


def _metrics(run: Path) -> dict:
    return json.loads((run / "test_metrics.json").read_text())["tasks"]


def test_same_seed_same_metrics_and_resume_after_kill(tmp_path, data_root):
    cfg = write_cfg(tmp_path, **{"train.epochs": 4})
    env = {**os.environ, "MAILNET_DATA": str(data_root), "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "mailnet", "train", "--config", str(cfg), "--quiet", "--device", "cpu"]

    a, b = tmp_path / "a", tmp_path / "b"
    subprocess.run(base + ["--run-dir", str(a)], env=env, check=True)

    # a second run, killed (SIGKILL) once its first epoch's checkpoint exists, then resumed
    proc = subprocess.Popen(base + ["--run-dir", str(b)], env=env)
    last = b / "checkpoints" / "last.safetensors"
    deadline = time.time() + 300
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (b / "FINISHED").exists()
    subprocess.run([sys.executable, "-m", "mailnet.cli", "train", "--resume", str(b), "--quiet", "--device", "cpu"],
                   env=env, check=True)
    assert (b / "FINISHED").exists()
    assert _metrics(a) == _metrics(b)
    started, resumed = json.loads((b / "environment.json").read_text())["sittings"]
    assert started["resumed"] is False and resumed["resumed"] is True and "--resume" in resumed["command"]
    ha = json.loads((a / "metrics.json").read_text())
    hb = json.loads((b / "metrics.json").read_text())
    assert [r["val_loss"] for r in ha] == [r["val_loss"] for r in hb]


def test_seeds_reuse_finished_runs_and_check_every_folder_before_training(tmp_path, data_root, capsys):
    """An interrupted --seeds job used to be impossible to continue (a finished seed's folder stopped it), and a
    folder in the way of a later seed stopped the job only after the earlier seeds had trained."""
    cfg = write_cfg(tmp_path, **{"train.epochs": 1, "train.max_steps_per_epoch": 2})
    base = tmp_path / "seeds"
    common = ["train", "--config", str(cfg), "--run-dir", str(base), "--data-root", str(data_root), "--quiet",
              "--device", "cpu"]
    assert cli(*common, "--seeds", "1") == 0
    stamp = (base / "seed1" / "FINISHED").stat().st_mtime_ns
    capsys.readouterr()
    assert cli(*common, "--seeds", "0,1") == 0
    out = capsys.readouterr().out
    assert "seed 1 (" in out and "finished earlier, reused" in out and (base / "seed0" / "FINISHED").is_file()
    assert (base / "seed1" / "FINISHED").stat().st_mtime_ns == stamp
    summary = json.loads((base / "seeds_summary.json").read_text())
    assert summary["seeds"] == [0, 1]

    (base / "seed3").mkdir()
    (base / "seed3" / "metrics.json").write_text("[]")  # an unfinished run, past its first epoch
    assert cli(*common, "--seeds", "2,3") == 2
    err = capsys.readouterr().err
    assert "seed3: an unfinished run of seed 3; resume it with `mailnet train --resume" in err
    assert not (base / "seed2").exists()  # checked before seed 2 trained
    assert cli(*common, "--seeds", "0,1", "train.lr=0.5") == 2
    assert "seed0: finished, but with another config than this command's" in capsys.readouterr().err

def test_adv_eps_sets_the_budget_of_adversarial_training_the_config_turns_on(tmp_path, data_root, capsys):
    """`--adv-eps` / `--adv-steps` change the adversarial training a config already sets up (train.adv.method), as
    the overrides do; with none turned on, anywhere, they are refused."""
    cfg = write_cfg(tmp_path, **{"train.epochs": 1, "train.max_steps_per_epoch": 1,
                                 "model.kwargs.widths": [8, 8, 16, 16]})
    run = tmp_path / "adv"
    common = ["train", "--config", str(cfg), "--data-root", str(data_root), "--quiet", "--device", "cpu"]
    assert cli(*common, "--run-dir", str(run), "--adv-eps", "2/255", "--adv-steps", "3") == 2
    assert "neither --adv-train nor the config (train.adv.method) turns it on" in capsys.readouterr().err
    assert not run.exists()
    assert cli(*common, "--run-dir", str(run), "train.adv.method=fgsm-rs", "--adv-eps", "2/255", "--adv-steps",
               "3") == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())["train"]["adv"]
    assert (saved["method"], saved["eps"], saved["steps"]) == ("fgsm-rs", "2/255", 3)


def test_torchrun_two_cpu_processes(tmp_path, data_root):
    """Two processes train each seed together (the second rank follows rank 0 from seed to seed, not hanging it)."""
    cfg = write_cfg(tmp_path, **{"train.epochs": 1, "train.max_steps_per_epoch": 3})
    base = tmp_path / "ddp"
    env = {**os.environ, "MAILNET_DATA": str(data_root), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "mailnet", "train", "--config", str(cfg), "--run-dir", str(base), "--seeds", "0,1", "--quiet",
           "--device", "cpu"]
    subprocess.run(cmd, env=env, check=True, timeout=600)
    for run in (base / "seed0", base / "seed1"):
        test = json.loads((run / "test_metrics.json").read_text())
        assert test["tasks"]["pneumonia"]["n"] == 64 and test["tasks"]["breast"]["n"] == 64
        assert (run / "FINISHED").exists()
        assert len(json.loads((run / "metrics.json").read_text())) == 1
    assert (base / "seeds_summary.json").is_file()


NAN_ON_ONE_RANK = """
import json, os, sys
import torch
import mailnet.engine.trainer as trainer
from mailnet.config import load_config
from mailnet.errors import MailnetError

real, calls = trainer.task_loss, [0]


def task_loss(*args, **kwargs):  # rank 1 alone meets a non-finite loss, at its second step
    calls[0] += 1
    loss = real(*args, **kwargs)
    return loss * float("nan") if os.environ["RANK"] == "1" and calls[0] > 2 else loss


trainer.task_loss = task_loss
try:
    trainer.train(load_config(sys.argv[1]), sys.argv[2], device="cpu", progress=False)
    message = "finished"
except MailnetError as e:
    message = str(e)
with open(f"{sys.argv[2]}.rank{os.environ['RANK']}", "w") as f:
    f.write(message)
"""


def test_a_non_finite_loss_stops_training_with_one_line(tmp_path, data_root, monkeypatch):
    import torch

    import mailnet.engine.trainer as trainer
    from mailnet.config import load_config
    from mailnet.errors import MailnetError

    monkeypatch.setattr(trainer, "task_loss", lambda *a, **k: torch.tensor(float("inf"), requires_grad=True))
    cfg = load_config(write_cfg(tmp_path, **{"train.epochs": 1, "train.max_steps_per_epoch": 2}))
    with pytest.raises(MailnetError, match="training loss became inf at epoch 1, step 1; lower train.lr"):
        trainer.train(cfg, tmp_path / "run", device="cpu", data_root=str(data_root), progress=False)


def test_a_non_finite_loss_on_one_rank_stops_every_rank_instead_of_hanging_them(tmp_path, data_root):
    """Under torchrun the rank that meets the bad loss used to raise alone, leaving the other one waiting in the
    gradient all-reduce for ever; now every rank stops at the same step with the same message."""
    cfg = write_cfg(tmp_path, **{"train.epochs": 1, "train.max_steps_per_epoch": 3})
    script = tmp_path / "nan_on_rank1.py"
    script.write_text(NAN_ON_ONE_RANK)
    run = tmp_path / "ddp"
    env = {**os.environ, "MAILNET_DATA": str(data_root), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           str(cfg), str(run)]
    subprocess.run(cmd, env=env, check=True, timeout=300, capture_output=True)
    said = [Path(f"{run}.rank{r}").read_text() for r in (0, 1)]
    assert said[0] == "training loss became non-finite on rank 1 at epoch 1, step 2; lower train.lr or check the data"
    assert said[1] == "training loss became nan on rank 1 at epoch 1, step 2; lower train.lr or check the data"


SYNC_BUFFERS = """
import os, sys
import torch
from mailnet.engine.distributed import init_distributed, sync_buffers

info = init_distributed(torch.device("cpu"))
bn = torch.nn.BatchNorm2d(3)
bn.running_mean.fill_(10.0 + info.rank)  # as after each rank's own last training batch
bn.num_batches_tracked.fill_(5 + info.rank)
sync_buffers(bn, info)
with open(f"{sys.argv[1]}.rank{info.rank}", "w") as f:
    f.write(f"{bn.running_mean.tolist()} {int(bn.num_batches_tracked)}")
"""


def test_ranks_validate_with_rank_0s_batchnorm_statistics(tmp_path):
    script = tmp_path / "sync.py"
    script.write_text(SYNC_BUFFERS)
    out = tmp_path / "buffers"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), str(out)]
    subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True, timeout=300, capture_output=True)
    assert [Path(f"{out}.rank{r}").read_text() for r in (0, 1)] == ["[10.0, 10.0, 10.0] 5"] * 2


def test_noise_warmup_ramps_robust_mail_noise_and_validates_at_full_noise(tmp_path, data_root, monkeypatch):
    import mailnet.engine.trainer as trainer
    from mailnet.config import load_config
    from mailnet.errors import MailnetError
    from mailnet.layers.noise import ModulatedNoise

    scales: list[float] = []
    real_scale, real_eval = trainer.set_noise_scale, trainer.evaluate

    def scale_spy(model, scale):
        scales.append(scale)
        return real_scale(model, scale)

    evaluated_at: list[set[float]] = []

    def eval_spy(model, *args, **kwargs):
        evaluated_at.append({m.scale for m in model.modules() if isinstance(m, ModulatedNoise)})
        return real_eval(model, *args, **kwargs)

    monkeypatch.setattr(trainer, "set_noise_scale", scale_spy)
    monkeypatch.setattr(trainer, "evaluate", eval_spy)
    cfg = write_cfg(tmp_path, **{"model.name": "robust_mail", "train.epochs": 3, "train.noise_warmup": 2,
                                 "train.max_steps_per_epoch": 2})
    assert cli("train", "--config", str(cfg), "--run-dir", str(tmp_path / "run"), "--data-root", str(data_root),
               "--quiet", "--device", "cpu") == 0
    # the up-front check, then per epoch two training steps and the reset before validation
    assert scales == [1.0, 0.0, 0.25, 1.0, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0]
    assert len(evaluated_at) == 4 and all(s == {1.0} for s in evaluated_at)  # 3 validations + test: full noise

    # the checkpoint names Robust-MAIL's defaults too: a later release changing one (the random-filter fraction
    # leaves the weights' shapes alone) still rebuilds the model that was trained
    from mailnet.engine.checkpoint import load_checkpoint
    from mailnet.engine.runs import load_model
    from mailnet.models import mail as mail_module

    kwargs = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.safetensors")[1]["model"]["kwargs"]
    assert (kwargs["rpf_fraction"], kwargs["attention_noise"], kwargs["mc_dropout"]) == (0.25, True, True)
    assert "fast" not in kwargs and kwargs["widths"] == TINY["model"]["kwargs"]["widths"]
    monkeypatch.setattr(mail_module, "ROBUST_DEFAULTS", {**mail_module.ROBUST_DEFAULTS, "rpf_fraction": 0.5})
    assert load_model(tmp_path / "run")[0].config["rpf_fraction"] == 0.25

    # a model without attention noise is refused before anything is written
    bad = load_config(write_cfg(tmp_path, **{"train.noise_warmup": 1}))
    with pytest.raises(MailnetError, match="train.noise_warmup: mail has no attention noise"):
        trainer.train(bad, tmp_path / "bad", device="cpu", data_root=str(data_root), progress=False)
    assert not (tmp_path / "bad").exists()


def test_time_limit_stops_before_an_epoch_that_would_overrun_and_still_finishes_the_run(tmp_path, data_root,
                                                                                         capsys):
    import mailnet.engine.trainer as trainer

    # 10 ms of budget: the first epoch always runs, the second would end past the limit
    cfg = write_cfg(tmp_path, **{"train.epochs": 5, "train.time_limit": 0.01, "train.max_steps_per_epoch": 1})
    run = tmp_path / "run"
    assert cli("train", "--config", str(cfg), "--run-dir", str(run), "--data-root", str(data_root), "--quiet",
               "--device", "cpu") == 0
    assert "train.time_limit (0.01 s): stopping after epoch 1 of 5" in capsys.readouterr().out
    test = json.loads((run / "test_metrics.json").read_text())
    assert (test["epochs_run"], test["best_epoch"], test["stop_reason"]) == (1, 1, "time_limit")
    assert (run / "FINISHED").exists() and len(json.loads((run / "metrics.json").read_text())) == 1
    # another epoch as long as the last one must fit; no limit never stops
    assert trainer.over_time_limit(50.0, 11.0, 60) and not trainer.over_time_limit(50.0, 10.0, 60)
    assert not trainer.over_time_limit(1e9, 1e9, None)


def test_config_data_root_is_used_when_no_data_root_option_is_given(tmp_path, data_root, monkeypatch):
    """--data-root, else the config's data.root, else $MAILNET_DATA and the default folders: a config that names
    its data folder trains without the option, even with the environment pointing elsewhere."""
    monkeypatch.setenv("MAILNET_DATA", str(tmp_path / "elsewhere"))
    monkeypatch.chdir(tmp_path)  # no ../shared/data from here
    cfg = write_cfg(tmp_path, **{"data.root": str(data_root), "data.subset": {"train": 32, "val": 16, "test": 16},
                                 "train.epochs": 1, "train.max_steps_per_epoch": 1})
    assert cli("train", "--config", str(cfg), "--run-dir", str(tmp_path / "run"), "--quiet", "--device", "cpu") == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    locations = [Path(m["source"]["location"]).resolve() for m in manifest["modalities"]]
    assert all(loc.is_relative_to(Path(data_root).resolve()) for loc in locations), locations


def test_shape_settings_that_cannot_work_fail_before_a_run_directory_is_written(tmp_path, data_root, capsys):
    """A fused model needs one image size for every modality, and the input/head shapes come from the data: both
    are refused in one line, with nothing written, instead of failing at the first batch of a half-made run."""
    mixed = write_cfg(tmp_path, **{"data.modalities": [
        {"name": "pneumonia", "source": "medmnist", "flag": "pneumoniamnist", "channels": 1, "size": 28},
        {"name": "breast", "source": "medmnist", "flag": "breastmnist", "channels": 1, "size": 32}]})
    run = tmp_path / "run"
    base = ["train", "--config", str(mixed), "--run-dir", str(run), "--data-root", str(data_root), "--quiet"]
    assert cli(*base) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == ("mailnet: error: data.modalities: image sizes [28, 32] differ, but mail fuses feature maps across "
                   "modalities and needs one size; give every modality the same size (data.size)")
    assert cli(*base, "model.kwargs.num_classes=[3,3]") == 2
    assert "model.kwargs.num_classes: set from the data ([2, 2]); remove it" in capsys.readouterr().err
    assert not run.exists()


def test_an_image_size_too_small_for_the_model_names_the_data_key(tmp_path, data_root, capsys):
    """``data.size=7`` read ``mail: img_size must be ...``, a model argument the config does not have."""
    run = tmp_path / "run"
    base = ["train", "--config", str(write_cfg(tmp_path)), "--run-dir", str(run), "--data-root", str(data_root),
            "--quiet", "--device", "cpu"]
    assert cli(*base, "data.size=7") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == ("mailnet: error: data.size: 7 px is too small for model 'mail' (modality 'pneumonia'); it needs "
                   "images of at least 8 px")
    write_cfg(tmp_path, **{"data.modalities": [  # rewrites the config of `base`: one modality with its own size
        {"name": "pneumonia", "source": "medmnist", "flag": "pneumoniamnist", "channels": 1},
        {"name": "breast", "source": "medmnist", "flag": "breastmnist", "channels": 1, "size": 4}]})
    assert cli(*base, "model.name=resnet18_late_fusion") == 2
    assert "data.modalities[1].size: 4 px is too small for model 'resnet18_late_fusion' (modality 'breast')" \
        in capsys.readouterr().err
    assert not run.exists()


def test_resuming_a_run_that_had_stopped_early_trains_no_further(tmp_path, data_root):
    """Killed during its final test evaluation, a run that had stopped early must, when resumed, only evaluate: its
    last checkpoint already holds the stopping state, and training on would change its best checkpoint."""
    from mailnet.engine import rundir
    from mailnet.engine.checkpoint import load_checkpoint, save_checkpoint

    cfg = write_cfg(tmp_path, **{"train.epochs": 1, "train.early_stopping": 1, "train.max_steps_per_epoch": 2,
                                 "data.subset": {"train": 64, "val": 16, "test": 16}})
    run = tmp_path / "run"
    assert cli("train", "--config", str(cfg), "--run-dir", str(run), "--data-root", str(data_root), "--quiet",
               "--device", "cpu") == 0
    # as if the run had planned 3 epochs, stopped early after the first, and was killed before its test results
    saved = yaml.safe_load(rundir.config_path(run).read_text())
    saved["train"]["epochs"] = 3
    rundir.config_path(run).write_text(yaml.safe_dump(saved))
    tensors, meta = load_checkpoint(rundir.last_path(run))
    meta["config"]["train"]["epochs"] = 3
    meta["state"]["bad_epochs"] = 1
    save_checkpoint(rundir.last_path(run), tensors, meta)
    for name in ("FINISHED", "test_metrics.json"):
        (run / name).unlink()
    assert cli("train", "--resume", str(run), "--data-root", str(data_root), "--quiet", "--device", "cpu") == 0
    test = json.loads(rundir.test_metrics_path(run).read_text())
    assert (test["epochs_run"], test["stop_reason"]) == (1, "early_stopping")
    assert len(json.loads((run / "metrics.json").read_text())) == 1


def test_a_run_killed_between_its_first_best_and_last_checkpoints_starts_afresh(tmp_path):
    """Only a 'last' checkpoint can be resumed; a directory with just a first 'best' (or a half-written temporary
    file) must be reusable by starting again, not refused both ways."""
    from mailnet.engine import rundir

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("config.yaml", "manifest.json", "checkpoints/best.safetensors", "checkpoints/best.json",
                 "checkpoints/.last.safetensors.x1.tmp"):
        (run / name).write_text("x")
    assert rundir.never_trained(run)
    rundir.prepare(run)  # no error: started afresh in place
    rundir.last_path(run).write_text("x")
    assert not rundir.never_trained(run)


def test_a_fresh_run_that_fails_before_its_first_checkpoint_leaves_nothing(tmp_path, data_root, monkeypatch,
                                                                              capsys):
    """A failure found only once training runs (here: raised by the first validation, as a corrupt image read in
    the first epoch would be) must not leave a half-made run directory behind."""
    import mailnet.engine.trainer as trainer
    from mailnet.errors import DataError

    def broken(*args, **kwargs):
        raise DataError("imgs/3.png: unreadable image file (truncated)")

    monkeypatch.setattr(trainer, "evaluate", broken)
    cfg = write_cfg(tmp_path, **{"train.epochs": 1, "train.max_steps_per_epoch": 1,
                                 "data.subset": {"train": 32, "val": 16, "test": 16}})
    run = tmp_path / "run"
    assert cli("train", "--config", str(cfg), "--run-dir", str(run), "--data-root", str(data_root), "--quiet",
               "--device", "cpu") == 2
    assert "mailnet: error: imgs/3.png: unreadable image file (truncated)" in capsys.readouterr().err
    assert not run.exists()
