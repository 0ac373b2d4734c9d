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


def test_architecture_writes_out_every_default_a_checkpoint_must_pin():
    from mailnet.models.registry import architecture

    given = {"in_chans": [1, 3], "num_classes": [2, 5], "img_size": 16, "widths": [8, 8, 16, 16]}
    robust = architecture("robust_mail", given)
    assert {k: robust[k] for k in given} == given  # what was given wins, and comes first
    assert list(robust)[:len(given)] == list(given)
    assert (robust["rpf_fraction"], robust["attention_noise"], robust["msgdc_bn"], robust["mc_dropout"],
            robust["noise_std"], robust["groups"], robust["stem"]) == (0.25, True, True, True, 0.6, 16, "auto")
    assert "fast" not in robust and "model_name" not in robust  # how it is computed is not what it is
    assert architecture("mail", given)["rpf_fraction"] == 0.0
    assert "rpf_fraction" not in architecture("cascaded_fusion", given)  # an argument it does not take
    late = architecture("resnet18_late_fusion", {"in_chans": [3, 3]})
    assert late["in_chans"] == [3, 3] and late["num_classes"] == [2, 2] and late["drop_rate"] == 0.0
    assert architecture("no_such_model", {"x": 1}) == {"x": 1}  # create_model reports the name
    # every filled-in set builds the same model as the bare arguments
    torch.manual_seed(0)
    a = mailnet.create_model("robust_mail", **given)
    torch.manual_seed(0)
    b = mailnet.create_model("robust_mail", **robust)
    assert a.config == b.config and all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                                           b.state_dict().values()))


def test_a_users_builder_records_json_defaults_and_declared_ones_only():
    from mailnet.models import registry

    def my_net(in_chans=(3,), num_classes=(2,), act=torch.nn.ReLU, depth=2, **kwargs):
        return torch.nn.Linear(1, 1)

    mailnet.register_model(my_net, name="test_arch_user_net", defaults={"width": 8})
    try:
        got = registry.architecture("test_arch_user_net", {"depth": 3})
        assert got == {"depth": 3, "in_chans": [3], "num_classes": [2], "width": 8}  # act: a class, not JSON
        mailnet.register_model(my_net, name="test_arch_user_net")  # the same builder again keeps its defaults
        assert registry.architecture("test_arch_user_net", {})["width"] == 8
    finally:
        registry._REGISTRY.pop("test_arch_user_net", None)
        registry._DEFAULTS.pop("test_arch_user_net", None)


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
