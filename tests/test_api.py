"""The Python entry points (``mailnet.api``): train from a partial dict or a file, resume, evaluate, devices given
as ``torch.device``; a custom model registered from user code, checked for its output structure and made visible
to the command line with ``--import`` / ``$MAILNET_IMPORT``."""
from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch

from mailnet import api
from mailnet.cli import main
from mailnet.errors import ConfigError, MailnetError, ModelError
from mailnet.models import registry

DATA = {
    "size": 28, "subset": {"train": 32, "val": 16, "test": 16},
    "modalities": [{"name": "pneumonia", "source": "medmnist", "flag": "pneumoniamnist", "channels": 1},
                   {"name": "breast", "source": "medmnist", "flag": "breastmnist", "channels": 1}],
}
PARTIAL = {"model": {"name": "mail", "kwargs": {"widths": [8, 8, 16, 16]}}, "data": DATA,
           "train": {"epochs": 1, "batch_size": 16, "max_steps_per_epoch": 2},
           "eval": {"mc_samples": 1, "partner_draws": 1, "partner_bank": 2}}


@pytest.fixture
def scratch_registry():
    """Models a test registers are removed afterwards, so other tests still see exactly the library's models."""
    before = set(registry._REGISTRY)
    yield
    for name in set(registry._REGISTRY) - before:
        del registry._REGISTRY[name]


def test_train_from_a_partial_dict_then_evaluate_and_resume(tmp_path, data_root):
    result = api.train(PARTIAL, tmp_path / "run", device=torch.device("cpu"), data_root=str(data_root),
                       progress=False)
    assert result.run_dir == tmp_path / "run" and (result.run_dir / "FINISHED").is_file()
    assert set(result.test["tasks"]) == {"pneumonia", "breast"}
    saved = json.loads((result.run_dir / "test_metrics.json").read_text())
    assert saved["tasks"]["breast"]["acc"] == result.test["tasks"]["breast"]["acc"]

    val = api.evaluate(result.run_dir, "val", device="cpu", data_root=str(data_root))
    assert val["checkpoint"].endswith("best.safetensors") and set(val["tasks"]) == {"pneumonia", "breast"}
    assert "_predictions" not in val
    again = api.resume(result.run_dir)  # finished: nothing trained, the stored metrics come back
    assert again.test["tasks"]["breast"]["acc"] == result.test["tasks"]["breast"]["acc"]


def test_evaluate_reproduces_a_random_models_test_metrics_with_the_runs_batch_size(tmp_path, data_root):
    """Robust-MAIL draws its random filters once per batch: evaluating at another batch size than the run's
    (``mailnet evaluate`` used a fixed 256) gives another draw, so the run's test metrics were not reproduced."""
    cfg = {**PARTIAL, "model": {"name": "robust_mail", "kwargs": {"widths": [8, 8, 16, 16]}},
           "eval": {**PARTIAL["eval"], "batch_size": 4, "mc_samples": 2}}
    result = api.train(cfg, tmp_path / "run", device="cpu", data_root=str(data_root), progress=False)
    again = api.evaluate(result.run_dir, "test", device="cpu", data_root=str(data_root))
    for task in ("pneumonia", "breast"):
        assert again["tasks"][task]["auc"] == result.test["tasks"][task]["auc"]
    other = api.evaluate(result.run_dir, "test", device="cpu", data_root=str(data_root), batch_size=16)
    assert any(other["tasks"][t]["auc"] != result.test["tasks"][t]["auc"] for t in ("pneumonia", "breast"))

def test_the_default_run_dir_is_the_commands_and_overrides_apply(tmp_path, data_root, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = api.train({**PARTIAL, "name": "mine"}, overrides=["seed=3", "train.max_steps_per_epoch=1"],
                       device="cpu", data_root=str(data_root), progress=False)
    assert result.run_dir == tmp_path.joinpath("runs", "mine", "mail", "seed3").relative_to(tmp_path)
    assert (tmp_path / result.run_dir / "FINISHED").is_file()


@pytest.mark.parametrize("change, expected", [
    ({"train": {"lr": "fast"}}, "train.lr"),
    ({"train": {"epoch": 3}}, "train.epoch: unknown config key"),
    ({"data": {}}, "data: the config needs a data section"),
])
def test_a_bad_dict_fails_in_one_line_before_anything_is_written(tmp_path, change, expected):
    with pytest.raises(ConfigError, match=expected):
        api.train({**PARTIAL, **change}, tmp_path / "run", device="cpu", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("config, overrides, expected", [
    (42, None, "config: expected a YAML file path (str or Path) or a mapping of sections (model, data, train, "
               "...), got int"),
    (PARTIAL, 3, "overrides: expected a list of KEY=VALUE strings, got int"),
    (PARTIAL, [3], "override 3: expected a KEY=VALUE string, e.g. 'train.epochs=3'"),
    (PARTIAL, "train.epochs=0", "train.epochs: must be an integer >= 1, got 0"),  # one override, not 14 characters
])
def test_wrong_argument_types_are_named_up_front(tmp_path, config, overrides, expected):
    """``train(42)`` raised a TypeError from deep inside; a string of overrides was read character by character."""
    with pytest.raises(ConfigError) as e:
        api.train(config, tmp_path / "run", overrides=overrides, device="cpu", progress=False)
    assert str(e.value) == expected
    assert not (tmp_path / "run").exists()


def test_a_single_override_string_is_applied(tmp_path, monkeypatch):
    import mailnet.engine.trainer as trainer

    seen = {}
    monkeypatch.setattr(trainer, "train", lambda cfg, out, **kw: seen.update(cfg=cfg, out=out) or {"tasks": {}})
    result = api.train(PARTIAL, tmp_path / "run", overrides="train.epochs=2", device="cpu", progress=False)
    assert seen["cfg"]["train"]["epochs"] == 2 and result.run_dir == tmp_path / "run"


@pytest.mark.parametrize("kwargs, expected", [
    ({"channels": 1, "size": 0}, "load_image: size must be a positive integer (pixels per side), got 0"),
    ({"channels": 1, "size": -5}, "load_image: size must be a positive integer (pixels per side), got -5"),
    ({"channels": 1, "size": 2.5}, "load_image: size must be a positive integer (pixels per side), got 2.5"),
    ({"channels": 0, "size": 28}, "load_image: channels must be a positive integer, got 0"),
    ({"channels": "3", "size": 28}, "load_image: channels must be a positive integer, got '3'"),
])
def test_load_image_names_a_bad_argument(tmp_path, kwargs, expected):
    """``size=0`` raised a raw torch RuntimeError from the resizing."""
    from PIL import Image

    import mailnet

    path = tmp_path / "x.png"
    Image.fromarray(torch.zeros(12, 12, dtype=torch.uint8).numpy()).save(path)
    with pytest.raises(ConfigError) as e:
        mailnet.load_image(path, **kwargs)
    assert str(e.value) == expected
    assert mailnet.load_image(path, channels=3, size=8).shape == (1, 3, 8, 8)


@pytest.mark.parametrize("device, expected", [("tpu", "choose cpu, cuda, cuda:N or auto"),
                                              ("cuda:x", "choose cpu, cuda, cuda:N or auto")])
def test_devices_are_named_without_command_line_flags(tmp_path, device, expected):
    with pytest.raises(MailnetError, match=expected):
        api.train(PARTIAL, tmp_path / "run", device=device, progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_a_cuda_device_that_is_absent_is_refused(tmp_path):
    with pytest.raises(MailnetError, match="no CUDA device is available"):
        api.train(PARTIAL, tmp_path / "run", device="cuda:1", progress=False)


class _OneTensor(torch.nn.Module):
    """A custom model that breaks the contract: one bare logits tensor instead of one per task."""

    def __init__(self, in_chans, num_classes, img_size=28, heads=None):
        super().__init__()
        self.heads = heads
        self.fc = torch.nn.Linear(in_chans[0] * img_size * img_size, num_classes[0])

    def forward(self, xs):
        out = self.fc(xs[0].flatten(1))
        return out if self.heads is None else [out] * self.heads


@pytest.mark.parametrize("heads, expected", [
    (None, "returned Tensor; it must return a list of logits tensors, one (batch, classes) tensor per task"),
    (1, "returned 1 logits tensor(s) for 2 tasks (pneumonia, breast)"),
])
def test_a_custom_model_with_the_wrong_outputs_is_named_not_half_trained(tmp_path, data_root, scratch_registry,
                                                                        heads, expected):
    def api_bad_outputs(in_chans, num_classes, img_size=28):
        return _OneTensor(in_chans, num_classes, img_size, heads)

    registry.register_model(api_bad_outputs)
    cfg = {**PARTIAL, "model": {"name": "api_bad_outputs"}}
    with pytest.raises(ModelError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        api.train(cfg, tmp_path / "run", device="cpu", data_root=str(data_root), progress=False)
    assert not (tmp_path / "run").exists()  # failed at its first batch: nothing half-written is left


PLUGIN = '''
import torch
from mailnet.models.registry import register_model


class Tiny(torch.nn.Module):
    def __init__(self, in_chans, num_classes):
        super().__init__()
        self.heads = torch.nn.ModuleList(torch.nn.Linear(c, k) for c, k in zip(in_chans, num_classes))

    def forward(self, xs):
        return [h(x.mean(dim=(2, 3))) for h, x in zip(self.heads, xs)]


@register_model
def plugin_tiny(in_chans, num_classes, img_size=28):
    return Tiny(in_chans, num_classes)
'''


def test_a_users_model_module_is_imported_by_the_command_line(tmp_path, data_root, monkeypatch, capsys,
                                                               scratch_registry):
    (tmp_path / "my_models.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_models", raising=False)
    cfg = tmp_path / "c.json"  # JSON is YAML
    cfg.write_text(json.dumps({**PARTIAL, "model": {"name": "plugin_tiny"}}))
    run = tmp_path / "run"
    base = ["--data-root", str(data_root), "--device", "cpu"]
    assert main(["train", "--config", str(cfg), "--run-dir", str(run), "--quiet", *base]) == 2
    assert "unknown model 'plugin_tiny'" in capsys.readouterr().err
    assert main(["--import", "my_models", "train", "--config", str(cfg), "--run-dir", str(run), "--quiet",
                 *base]) == 0
    capsys.readouterr()
    monkeypatch.setenv("MAILNET_IMPORT", "my_models")  # the same, for commands started elsewhere (torchrun, bench)
    assert main(["evaluate", str(run), "--split", "val", *base]) == 0
    assert "val metrics" in capsys.readouterr().out
    assert main(["--import", "no_such_module_here", "evaluate", str(run)]) == 2
    assert "no module named 'no_such_module_here'" in capsys.readouterr().err
