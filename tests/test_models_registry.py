"""The timm-style registry: names, patterns, and a trained model back from its checkpoint or run directory."""
from __future__ import annotations

import pytest
import torch

import mailnet
from mailnet.engine import rundir
from mailnet.engine.checkpoint import save_checkpoint
from mailnet.errors import MailnetError, ModelError

SPEC = {"name": "mail", "kwargs": {"in_chans": [1, 3], "num_classes": [2, 5], "img_size": 16, "stem": "cifar",
                                   "widths": [8, 8, 16, 16]}}


def test_list_models_filters_like_timm():
    everything = mailnet.list_models()
    assert {"mail", "robust_mail", "resnet18_late_fusion", "drifa"} <= set(everything)
    assert mailnet.list_models("*mail*") == ["mail", "robust_mail"]
    assert mailnet.list_models(["resnet18_*", "drifa"]) == ["drifa", "resnet18_late_fusion", "resnet18_single"]
    assert mailnet.list_models("nothing*") == [] and mailnet.list_models("") == everything
    assert mailnet.is_model("mail") and not mailnet.is_model("mial")


@pytest.fixture()
def trained_run(tmp_path):
    """A run directory whose best checkpoint holds weights that differ from a fresh model's."""
    torch.manual_seed(3)
    model = mailnet.create_model(SPEC["name"], **SPEC["kwargs"])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    run = tmp_path / "run"
    rundir.best_path(run).parent.mkdir(parents=True)
    meta = {"model": SPEC, "epoch": 4, "paired": False,
            "modalities": [{"name": "xray", "in_chans": 1, "img_size": 16}, {"name": "us", "in_chans": 3, "img_size": 16}],
            "tasks": [{"name": "xray", "task_type": "binary", "num_classes": 2, "class_names": ["normal", "pneumonia"],
                       "modality": 0},
                      {"name": "us", "task_type": "ordinal", "num_classes": 5,
                       "class_names": ["birads1", "birads2", "birads3", "birads4", "birads5"], "modality": 1}]}
    save_checkpoint(rundir.best_path(run), {f"model.{k}": v for k, v in model.state_dict().items()}, meta)
    return run, model.eval()


def test_create_model_from_a_run_directory_or_checkpoint_gives_the_trained_model(trained_run):
    run, trained = trained_run
    xs = [torch.rand(3, 1, 16, 16), torch.rand(3, 3, 16, 16)]
    want = trained(xs)
    for where in (run, rundir.best_path(run), str(run)):
        got = mailnet.create_model("mail", checkpoint_path=where)
        assert not got.training
        for a, b in zip(got(xs), want):
            assert torch.allclose(a, b, atol=1e-6)
    # what the bare model's inputs and outputs are, without reading the checkpoint's JSON by hand
    info = got.checkpoint_meta
    assert [m["name"] for m in info["modalities"]] == ["xray", "us"] and info["modalities"][0]["in_chans"] == 1
    assert [t["class_names"][:2] for t in info["tasks"]] == [["normal", "pneumonia"], ["birads1", "birads2"]]
    assert info["model"] == "mail" and info["epoch"] == 4 and info["input_range"] == [0.0, 1.0]
    # the reference implementation loads the same weights and computes the same function
    ref = mailnet.create_model("mail", checkpoint_path=run, fast=False)
    assert type(ref) is not type(trained)
    for a, b in zip(ref(xs), want):
        assert torch.allclose(a, b, atol=1e-4)


def test_create_model_from_a_checkpoint_fails_in_one_line_on_the_wrong_name_or_path(trained_run, tmp_path):
    run, _ = trained_run
    with pytest.raises(MailnetError, match=r"holds a 'mail' model, not 'robust_mail'"):
        mailnet.create_model("robust_mail", checkpoint_path=run)
    with pytest.raises(MailnetError, match="no such run directory or checkpoint file"):
        mailnet.create_model("mail", checkpoint_path=tmp_path / "missing.safetensors")
    with pytest.raises(ModelError, match="unknown model 'mial'"):
        mailnet.create_model("mial", checkpoint_path=run)
    with pytest.raises(MailnetError, match="weights do not fit model 'mail'"):
        mailnet.create_model("mail", checkpoint_path=run, num_classes=[2, 3])


def test_a_checkpoint_with_nan_weights_is_refused_in_one_line(trained_run):
    from safetensors.torch import load_file

    run, _ = trained_run
    path = rundir.best_path(run)
    tensors = load_file(str(path))
    name = next(k for k, v in tensors.items() if v.is_floating_point() and v.dim() == 4)
    tensors[name][0, 0, 0, 0] = float("nan")
    save_checkpoint(path, tensors, {"model": SPEC})
    short = name[len("model."):]
    with pytest.raises(MailnetError, match=rf"weights contain NaN or infinite values \(tensor '{short}'\)"):
        mailnet.create_model("mail", checkpoint_path=run)
