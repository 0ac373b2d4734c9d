"""Starting a training from another run's weights (``model.init_from`` / ``mailnet train --init-from``)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from data_helpers import one_line
from mailnet.cli import main
from mailnet.engine import rundir
from mailnet.engine.checkpoint import load_checkpoint, save_checkpoint, tensors_fingerprint
from mailnet.engine.init_weights import init_from_checkpoint
from mailnet.errors import MailnetError
from mailnet.models import create_model

WIDTHS = [16, 32, 64, 128]
CFG = {
    "name": "init",
    "seed": 0,
    "model": {"name": "mail", "kwargs": {"widths": WIDTHS, "stem": "cifar"}},
    "data": {"mode": "unpaired", "size": 28, "equalize": "repeat",
             "subset": {"train": 64, "val": 32, "test": 32},
             "modalities": [{"name": "pneumonia", "source": "medmnist", "flag": "pneumoniamnist", "channels": 1},
                            {"name": "breast", "source": "medmnist", "flag": "breastmnist", "channels": 1}]},
    "train": {"epochs": 1, "batch_size": 32, "lr": 0.002, "max_steps_per_epoch": 2},
    "eval": {"batch_size": 64, "mc_samples": 2, "partner_draws": 1, "partner_bank": 2},
}


def _train(folder: Path, data_root: Path, run: Path, *extra: str, model: str = "mail") -> int:
    cfg = json.loads(json.dumps(CFG))
    cfg["model"]["name"] = model
    path = folder / f"{run.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return main(["train", "--config", str(path), "--run-dir", str(run), "--data-root", str(data_root), "--quiet",
                 "--device", "cpu", *extra])


@pytest.fixture(scope="module")
def source_run(tmp_path_factory, data_root) -> Path:
    """A MAIL run trained for two steps: weights that differ from any fresh initialisation."""
    folder = tmp_path_factory.mktemp("init_source")
    run = folder / "source"
    assert _train(folder, data_root, run) == 0
    return run


def _weights(run: Path) -> dict[str, torch.Tensor]:
    tensors, _ = load_checkpoint(rundir.best_path(run))
    return {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}


def test_a_run_started_from_another_records_what_it_copied(source_run, tmp_path, data_root):
    run = tmp_path / "target"
    assert _train(tmp_path, data_root, run, "--init-from", str(source_run)) == 0
    record = json.loads(rundir.init_path(run).read_text())
    assert record["checkpoint"] == str(rundir.best_path(source_run).resolve())
    assert record["fingerprint"] == tensors_fingerprint(rundir.best_path(source_run))
    assert record["loaded"] == record["of"] == len(_weights(source_run)) and record["source_model"] == "mail"
    assert record["kept_initial"] == record["shape_differs"] == record["unused"] == [] and record["share"] == 1
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["init_from"] == str(source_run)
    # at a learning rate of 1e-12 two Adam steps move no weight measurably: the run's parameters are the source's,
    # while a run of the same seed without init_from trains from its own initialisation
    slow = tmp_path / "slow"
    assert _train(tmp_path, data_root, slow, "train.lr=1e-12", "--init-from", str(source_run)) == 0
    fresh = tmp_path / "fresh"
    assert _train(tmp_path, data_root, fresh, "train.lr=1e-12") == 0
    source, started, own = _weights(source_run), _weights(slow), _weights(fresh)
    params = [k for k in source if k.endswith("weight") and source[k].ndim > 1]
    assert len(params) > 20
    for k in params:
        torch.testing.assert_close(started[k], source[k], rtol=0, atol=1e-9)
    assert all(not torch.allclose(own[k], source[k], rtol=0, atol=1e-3) for k in params)


def test_a_source_is_known_by_its_weights_not_its_path(source_run, tmp_path, monkeypatch):
    """``--seeds`` reuses a finished seed only when its config matches: the same weights named by a relative or
    an absolute path are the same start, and weights retrained at the same path are not."""
    import shutil

    from mailnet.bench.hashing import result_relevant
    from mailnet.config import load_config

    def relevant(init: str) -> dict:
        return result_relevant(load_config(json.loads(json.dumps(CFG)), [f"model.init_from={init}"]))

    copy = tmp_path / "copy"
    shutil.copytree(source_run, copy)
    monkeypatch.chdir(tmp_path)
    assert relevant("copy") == relevant(str(copy)) == relevant(str(source_run))
    weights = _weights(copy)
    first = next(iter(weights))
    weights[first] = weights[first] + 1
    save_checkpoint(rundir.best_path(copy), {f"model.{k}": v for k, v in weights.items()}, {"model": {}})
    assert relevant("copy") != relevant(str(source_run))
    assert relevant("missing")["model"]["init_from"] == "missing"  # unreadable: the path as given


def test_init_copies_exactly_the_tensors_that_fit_and_keeps_the_rest(source_run):
    source = _weights(source_run)
    torch.manual_seed(1)
    # Robust-MAIL has BN in its MSGDC branches and a trainable EMCAM noise weight that MAIL lacks; a head for
    # three classes does not fit the source's two-class head (random projection filters off: they would make
    # the trained MSGDC kernels smaller than MAIL's, a shape difference too)
    model = create_model("robust_mail", in_chans=[1, 1], num_classes=[3, 2], widths=WIDTHS, stem="cifar",
                         rpf_fraction=0.0)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    record = init_from_checkpoint(model, source_run)
    now = model.state_dict()
    loaded = [k for k in source if k in now and now[k].shape == source[k].shape]
    assert record["loaded"] == len(loaded) > 0.8 * len(source) and 0.9 < record["share"] < 1
    for k in loaded:
        assert torch.equal(now[k], source[k]), k
    for k in record["kept_initial"] + record["shape_differs"]:
        assert torch.equal(now[k], fresh[k]), k
    assert "emcams.0.noise.weight" in record["kept_initial"]
    assert any(".msgdc." in k and "bn" in k for k in record["kept_initial"])
    assert record["shape_differs"] and all(k.startswith("heads.0.") for k in record["shape_differs"])
    assert not set(record["kept_initial"]) & set(record["shape_differs"])
    assert record["unused"] == []


def test_a_checkpoint_that_fits_nothing_or_cannot_be_read_is_refused_in_one_line(source_run, tmp_path):
    other = create_model("resnet18_late_fusion", in_chans=[1, 1], num_classes=[2, 2], stem="cifar")
    with pytest.raises(MailnetError) as e:
        init_from_checkpoint(other, source_run)
    one_line(e, "model.init_from", "a mail model", "hold 0% of its weights", "another architecture?")
    with pytest.raises(MailnetError) as e:
        init_from_checkpoint(other, tmp_path / "nowhere")
    one_line(e, "model.init_from", "nowhere", "no such run directory or checkpoint file")
    pickle = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, pickle)
    with pytest.raises(MailnetError) as e:
        init_from_checkpoint(other, pickle)
    one_line(e, "model.init_from", "never unpickles")
    weights = _weights(source_run)
    first = next(k for k, v in weights.items() if v.is_floating_point())
    weights[first] = torch.full_like(weights[first], float("nan"))
    bad = tmp_path / "nan.safetensors"
    save_checkpoint(bad, {f"model.{k}": v for k, v in weights.items()}, {"model": {"name": "mail", "kwargs": {}}})
    model = create_model("mail", in_chans=[1, 1], num_classes=[2, 2], widths=WIDTHS, stem="cifar")
    with pytest.raises(MailnetError) as e:
        init_from_checkpoint(model, bad)
    one_line(e, "model.init_from", "NaN or infinite", first)


def test_a_bad_init_from_leaves_no_run_directory(source_run, tmp_path, data_root, capsys):
    run = tmp_path / "target"
    assert _train(tmp_path, data_root, run, "--init-from", str(tmp_path / "missing")) == 2
    assert "model.init_from" in capsys.readouterr().err and not run.exists()
    assert _train(tmp_path, data_root, run, "model.init_from=5") == 2
    assert "model.init_from: must be a run directory or checkpoint path" in capsys.readouterr().err
    assert not run.exists()
    # a resumed run continues from its own last checkpoint; another starting point makes no sense there
    assert main(["train", "--resume", str(source_run), "--init-from", str(source_run)]) == 2
    assert "drop --init-from" in capsys.readouterr().err
