"""One behaviour for every registered model's arguments and inputs (mailnet.models.inputs), and the registry's
register_model forms."""
from __future__ import annotations

import warnings

import pytest
import torch

import mailnet
from mailnet.errors import MailnetWarning, ModelError
from mailnet.layers.input_norm import InputNorm
from mailnet.models import registry

MODELS = ("mail", "robust_mail", "cascaded_fusion", "resnet18_single", "resnet18_late_fusion", "drifa")
MAIL_FAMILY = ("mail", "robust_mail", "cascaded_fusion")
TINY = (8, 8, 16, 16)


def build(name: str, **kw) -> torch.nn.Module:
    kw = {"in_chans": [1, 3], "num_classes": [2, 3], "img_size": 16, **kw}
    if name in MAIL_FAMILY:
        kw.setdefault("widths", TINY)
    return mailnet.create_model(name, **kw).eval()


def xs(chans=(1, 3), size=16, batch=2) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.rand(batch, c, size, size, generator=g) for c in chans]


@pytest.fixture(scope="module", params=MODELS)
def model(request) -> torch.nn.Module:
    return build(request.param)


def _run(model: torch.nn.Module, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    if hasattr(model, "seed_noise"):
        model.seed_noise(0)  # Robust-MAIL and DRIFA are random at eval: replay one draw
    with torch.no_grad():
        return model(inputs)


# -- 1. dtypes -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool])
def test_integer_images_are_refused_naming_modality_dtype_and_fix(model, dtype):
    bad = xs()
    bad[1] = (bad[1] * 255).to(dtype)
    with pytest.raises(ModelError, match=rf"{model.model_name} input for modality 1: dtype {dtype}.*x\.float\(\) / 255 "
                                         r"or read files with mailnet\.load_image"):
        model(bad)


def test_float64_is_cast_to_the_weights_dtype(model):
    want = _run(model, xs())
    got = _run(model, [x.double() for x in xs()])
    for a, b in zip(got, want):
        assert a.dtype == torch.float32 and torch.allclose(a, b, atol=1e-5)


def test_a_float64_model_keeps_float64():
    norm = InputNorm(1).double()
    assert norm(torch.rand(1, 1, 2, 2, dtype=torch.float64)).dtype == torch.float64


# -- 2. normalisation constants ------------------------------------------------------------------------------------
@pytest.mark.parametrize("std", [0, -0.5, [0.5, [0.5, 0.0, 0.5]]])
def test_nonpositive_input_std_is_refused(std):
    with pytest.raises(ModelError, match="std must be > 0"):
        build("mail", input_std=std)


def test_mean_for_the_wrong_channel_count_names_the_modality():
    with pytest.raises(ModelError, match=r"mail: modality 0's input_mean has 3 values for 1 channel\(s\); give 1 "):
        build("mail", input_mean=[0.5, 0.4, 0.3])
    with pytest.raises(ModelError, match="input_mean has 3 per-modality entries for 2 modalities"):
        build("mail", input_mean=[[0.5], [0.5], [0.5]])


def test_per_modality_mean_and_std_lists():
    m = build("mail", input_mean=[[0.2], [0.5, 0.4, 0.3]], input_std=[0.25, [0.1, 0.2, 0.3]])
    assert m.branches[0].norm.mean.flatten().tolist() == pytest.approx([0.2])
    assert m.branches[1].norm.mean.flatten().tolist() == pytest.approx([0.5, 0.4, 0.3])
    assert m.branches[1].norm.std.flatten().tolist() == pytest.approx([0.1, 0.2, 0.3])


# -- 3. the same checks and arguments everywhere --------------------------------------------------------------------
def test_different_batch_sizes_are_one_clear_error_everywhere(model):
    with pytest.raises(ModelError, match=rf"{model.model_name} input for modality 1: batch size 3 differs"):
        model([torch.rand(2, 1, 16, 16), torch.rand(3, 3, 16, 16)])


def test_wrong_count_names_the_model(model):
    with pytest.raises(ModelError, match=rf"^{model.model_name}: expected a list of 2 tensors .*got 1$"):
        model(xs()[:1])


def test_image_sizes_may_differ_only_where_maps_are_not_fused(model):
    mixed = [torch.rand(2, 1, 16, 16), torch.rand(2, 3, 24, 24)]
    if model.needs_equal_sizes:
        with pytest.raises(ModelError, match=rf"{model.model_name} input for modality 1: image size"):
            model(mixed)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MailnetWarning)
            assert len(_run(model, mixed)) == 2


@pytest.mark.parametrize("name", MODELS)
def test_an_int_means_one_modality_and_one_task(name):
    m = build(name, in_chans=3, num_classes=4)
    assert m.in_chans == [3]
    (out,) = _run(m, xs((3,)))
    assert out.shape == (2, 4)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("kwargs,match", [
    (dict(in_chans=[]), "in_chans must be an int or a non-empty list"),
    (dict(num_classes=[2, 0]), "num_classes"),
    (dict(img_size=4), "img_size must be"),
    (dict(img_size=[16, 16, 16]), "img_size has 3 entries for 2 modalities"),
    (dict(drop_rate=1.0), "drop_rate must be in"),
])
def test_bad_arguments_are_the_same_errors_everywhere(name, kwargs, match):
    with pytest.raises(ModelError, match=rf"^{name}: .*{match}"):
        build(name, **kwargs)


def test_cascaded_fusion_errors_name_cascaded_fusion():
    with pytest.raises(ModelError, match="^cascaded_fusion: widths needs 4"):
        build("cascaded_fusion", widths=[8, 8])
    with pytest.raises(ModelError, match="^cascaded_fusion: expected a list of 2 tensors"):
        build("cascaded_fusion")(torch.rand(2, 1, 16, 16))


# -- 4. image size ----------------------------------------------------------------------------------------------------
def test_another_image_size_warns_once_per_model():
    m = build("resnet18_late_fusion")
    with pytest.warns(MailnetWarning, match=r"resnet18_late_fusion was built for 16x16 images, but modality 0 is 24"):
        _run(m, xs(size=24))
    with warnings.catch_warnings():
        warnings.simplefilter("error", MailnetWarning)
        _run(m, xs(size=24))  # once per instance
        _run(build("resnet18_late_fusion"), xs(size=16))  # the built size: silent
        _run(build("resnet18_late_fusion", img_size=[16, 24]), [torch.rand(2, 1, 16, 16), torch.rand(2, 3, 24, 24)])
        _run(build("resnet18_late_fusion", img_size=None), xs(size=24))  # unknown size: nothing to compare


# -- 5. register_model ------------------------------------------------------------------------------------------------
@pytest.fixture()
def clean_registry(monkeypatch):
    registry._import_all()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def _builder(**kw):
    return torch.nn.Identity()


def test_register_model_forms(clean_registry):
    assert mailnet.register_model is registry.register_model and "register_model" in mailnet.__all__

    @mailnet.register_model
    def my_net(**kw):
        return torch.nn.Identity()

    assert mailnet.register_model(name="other")(_builder) is _builder
    mailnet.register_model(_builder, name="third")
    assert {"my_net", "other", "third"} <= set(mailnet.list_models())
    assert isinstance(mailnet.create_model("third"), torch.nn.Identity)


def test_register_model_twice_needs_overwrite(clean_registry):
    def my_net(**kw):
        return torch.nn.Identity()

    def my_net_v2(**kw):
        return torch.nn.Linear(1, 1)

    mailnet.register_model(my_net)
    with pytest.raises(ModelError, match=r"'my_net' is already registered .*overwrite=True"):
        mailnet.register_model(my_net_v2, name="my_net")
    mailnet.register_model(my_net_v2, name="my_net", overwrite=True)
    assert isinstance(mailnet.create_model("my_net"), torch.nn.Linear)
    with pytest.raises(ModelError, match=r"'mail' is already registered"):  # the built-ins are guarded too
        mailnet.register_model(my_net, name="mail")


def test_register_model_refuses_a_lambda_without_a_name(clean_registry):
    with pytest.raises(ModelError, match="give a name"):
        mailnet.register_model(lambda **kw: torch.nn.Identity())
    mailnet.register_model(lambda **kw: torch.nn.Identity(), name="lam")
    assert mailnet.is_model("lam")
