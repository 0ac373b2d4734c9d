"""The baselines of design doc section 6: shapes for 1-3 modalities, stems, gradient flow, which head sees what."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from mailnet.errors import ModelError
from mailnet.layers.drifa_attention import MultiBranchFusionAttention, MultimodalSharedAttention
from mailnet.models import create_model, list_models

BASELINES = ("resnet18_single", "resnet18_late_fusion", "drifa", "cascaded_fusion")
TINY_MAIL = dict(widths=(16, 16, 32, 32))  # MAIL-backbone models shrunk for the slower behavioural tests


@pytest.fixture(scope="module")
def small_drifa() -> nn.Module:
    return create_model("drifa", in_chans=[1, 3], num_classes=[2, 3], img_size=16)


def _inputs(chans: list[int], size: int, batch: int = 2, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(batch, c, size, size, generator=g) for c in chans]


def test_registered():
    assert set(BASELINES) <= set(list_models())


@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("m", [1, 2, 3])
def test_logit_shapes_28px(name, m):
    chans = [1, 3, 1][:m]
    classes = [2, 5, 3][:m]
    model = create_model(name, in_chans=chans, num_classes=classes, img_size=28).eval()
    with torch.no_grad():
        out = model(_inputs(chans, 28))
    assert [tuple(o.shape) for o in out] == [(2, k) for k in classes]
    assert all(torch.isfinite(o).all() for o in out)


@pytest.mark.parametrize("name", BASELINES)
def test_logit_shapes_128px_imagenet_stem(name):
    model = create_model(name, in_chans=[3, 1], num_classes=[4, 2], img_size=128).eval()
    with torch.no_grad():
        out = model(_inputs([3, 1], 128, batch=1))
    assert [tuple(o.shape) for o in out] == [(1, 4), (1, 2)]


def test_stems_follow_image_size():
    small = create_model("resnet18_late_fusion", in_chans=[1], num_classes=[2], img_size=28)
    big = create_model("resnet18_late_fusion", in_chans=[1], num_classes=[2], img_size=128)
    forced = create_model("resnet18_late_fusion", in_chans=[1], num_classes=[2], img_size=28, stem="imagenet")
    conv_s, conv_b = small.trunks[0].conv1, big.trunks[0].conv1
    assert (conv_s.kernel_size, conv_s.stride, conv_s.in_channels) == ((3, 3), (1, 1), 1)
    assert isinstance(small.trunks[0].maxpool, nn.Identity)
    assert (conv_b.kernel_size, conv_b.stride) == ((7, 7), (2, 2))
    assert isinstance(big.trunks[0].maxpool, nn.MaxPool2d)
    assert forced.trunks[0].conv1.kernel_size == (7, 7)


def test_single_heads_are_independent_late_fusion_heads_are_not():
    chans = [1, 1]
    xs = _inputs(chans, 28)
    changed = [xs[0], torch.rand_like(xs[1])]
    single = create_model("resnet18_single", in_chans=chans, num_classes=[2, 3], img_size=28).eval()
    late = create_model("resnet18_late_fusion", in_chans=chans, num_classes=[2, 3], img_size=28).eval()
    with torch.no_grad():
        s0, s1 = single(xs), single(changed)
        l0, l1 = late(xs), late(changed)
    assert torch.equal(s0[0], s1[0])  # head 1 reads only modality 1
    assert not torch.allclose(s0[1], s1[1])
    assert not torch.allclose(l0[0], l1[0])  # head 1 reads the concatenation


@pytest.mark.parametrize("name", ["resnet18_late_fusion", "drifa", "cascaded_fusion"])
def test_every_parameter_gets_a_gradient(name, small_drifa):
    extra = TINY_MAIL if name == "cascaded_fusion" else {}
    model = small_drifa if name == "drifa" else create_model(name, in_chans=[1, 3], num_classes=[2, 3], img_size=16,
                                                             **extra)
    model.train().zero_grad(set_to_none=True)
    out = model(_inputs([1, 3], 16, batch=3))
    sum(o.logsumexp(dim=1).sum() - o[:, 0].sum() for o in out).backward()
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert missing == []


def test_cascaded_attention_is_a_relay_race_mail_is_not():
    """Cascaded: modality 1 is gated before modality 2 is seen, so branch 1 ignores modality 2 while branch 2 sees
    modality 1. MAIL's parallel EMCAM makes every branch depend on every modality."""
    torch.manual_seed(0)
    xs = _inputs([1, 1, 1], 16)
    kw = dict(in_chans=[1, 1, 1], num_classes=[2, 2, 2], img_size=16, **TINY_MAIL)
    cascaded = create_model("cascaded_fusion", **kw).eval()
    mail = create_model("mail", **kw).eval()
    w = TINY_MAIL["widths"][-1]
    with torch.no_grad():
        base = cascaded.forward_features(xs).split(w, dim=1)
        second_changed = cascaded.forward_features([xs[0], xs[1] + 0.3, xs[2]]).split(w, dim=1)
        first_changed = cascaded.forward_features([xs[0] + 0.3, xs[1], xs[2]]).split(w, dim=1)
        mail_base = mail.forward_features(xs).split(w, dim=1)
        mail_changed = mail.forward_features([xs[0], xs[1] + 0.3, xs[2]]).split(w, dim=1)
    assert torch.equal(base[0], second_changed[0])
    assert not torch.allclose(base[1], first_changed[1]) and not torch.allclose(base[2], first_changed[2])
    assert not torch.allclose(mail_base[0], mail_changed[0])
    assert not cascaded.emcams[0].gamma.requires_grad


def test_drifa_mc_dropout_stays_on_in_eval(small_drifa):
    xs = _inputs([1, 3], 16)
    model = small_drifa.eval()
    assert model.drop.mc and model.drop.p == 0.25  # the published default
    with torch.no_grad():
        assert not torch.equal(model(xs)[0], model(xs)[0])
        model.seed_noise(7)
        first = model(xs)[0]
        model.seed_noise(7)
        assert torch.equal(first, model(xs)[0])  # a draw can be replayed (attacks, evaluation)
        assert model.stochastic_at_eval
        model.drop.mc = False
        try:
            assert torch.equal(model(xs)[0], model(xs)[0])
        finally:
            model.drop.mc = True
    plain = create_model("resnet18_late_fusion", in_chans=[1], num_classes=[2], img_size=16, mc_dropout=False)
    assert not plain.drop.mc


def test_drifa_shared_map_mixes_modalities():
    torch.manual_seed(0)
    shared = MultimodalSharedAttention(8, num_modalities=2)
    x1, x2 = torch.randn(2, 8, 5, 5), torch.randn(2, 8, 5, 5)
    y = shared([x1, x2])[0]
    y_changed = shared([x1, x2 + 1.0])[0]
    assert y.shape == x1.shape
    assert not torch.allclose(y, y_changed)


def test_fusion_attention_is_a_channel_map_in_unit_interval():
    torch.manual_seed(0)
    att = MultiBranchFusionAttention(6)
    x = torch.randn(3, 6, 7, 5)
    a = att.channel_map(x)
    assert a.shape == (3, 6, 1, 1)
    assert ((a > 0) & (a < 1)).all()
    assert torch.allclose(att(x), x * a)  # alpha starts at 1


def test_bad_arguments_give_model_errors():
    with pytest.raises(ModelError, match="one task per modality"):
        create_model("resnet18_single", in_chans=[1, 1], num_classes=[2], img_size=28)
    with pytest.raises(ModelError, match="unknown argument"):
        create_model("resnet18_late_fusion", in_chans=[1], num_classes=[2], img_size=28, widht=3)
    with pytest.raises(ModelError, match="num_classes must be an int or a non-empty list of integers >= 1"):
        create_model("drifa", in_chans=[1], num_classes=[0], img_size=28)
    with pytest.raises(ModelError, match="drop_rate"):
        create_model("drifa", in_chans=[1], num_classes=[2], img_size=28, drop_rate=1.5)
    with pytest.raises(ModelError, match="unknown argument"):
        create_model("cascaded_fusion", in_chans=[1], num_classes=[2], img_size=28, attention_noise=True)
    with pytest.raises(ModelError, match="stem"):
        create_model("resnet18_late_fusion", in_chans=[1], num_classes=[2], img_size=28, stem="vit")
    model = create_model("resnet18_late_fusion", in_chans=[1, 3], num_classes=[2], img_size=28)
    with pytest.raises(ModelError, match="list of 2 tensors"):
        model(_inputs([1], 28))
    with pytest.raises(ModelError, match="modality 1"):
        model(_inputs([1, 1], 28))
