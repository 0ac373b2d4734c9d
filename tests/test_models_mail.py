import pytest
import torch

from mailnet import create_model, list_models
from mailnet.errors import ModelError
from mailnet.layers.noise import Dropout
from mailnet.models.mail import MAIL, ROBUST_DEFAULTS


TINY = (16, 32, 32, 64)


def _xs(chans, size, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(b, c, size, size, generator=g) for c in chans]


@pytest.mark.parametrize("chans,size,stem", [
    ([1], 28, "cifar"), ([3, 1], 28, "cifar"), ([1, 3, 3], 28, "cifar"),
    ([3, 3], 64, "cifar"), ([1, 3], 128, "imagenet"), ([3], 128, "imagenet"),
])
def test_shapes_for_sizes_channels_and_modalities(chans, size, stem):
    classes = [2, 5, 3][: len(chans)]
    m = create_model("mail", in_chans=chans, num_classes=classes, img_size=size, widths=TINY).eval()
    assert m.stem_kind == stem
    with torch.no_grad():
        out = m(_xs(chans, size))
    assert [tuple(o.shape) for o in out] == [(2, k) for k in classes]
    assert m.forward_features(_xs(chans, size)).shape == (2, len(chans) * TINY[-1])


def test_tasks_need_not_match_modalities():
    m = MAIL([1, 1], [4], widths=TINY).eval()
    (out,) = m(_xs([1, 1], 16))
    assert out.shape == (2, 4)


def test_every_parameter_gets_a_gradient():
    m = MAIL([1, 3], [2, 3], img_size=16, widths=TINY)
    out = m(_xs([1, 3], 16, b=3))
    sum(o.sum() for o in out).backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing


def test_modalities_interact_through_emcam():
    m = MAIL([1, 1], [2, 2], widths=TINY).eval()
    xs = _xs([1, 1], 16)
    changed = [xs[0], 1.0 - xs[1]]
    with torch.no_grad():
        assert not torch.allclose(m.forward_features(xs)[:, :64], m.forward_features(changed)[:, :64])
        for e in m.emcams:
            e.cross_modal = False
        assert torch.equal(m.forward_features(xs)[:, :64], m.forward_features(changed)[:, :64])


def test_default_two_modality_128px_model_has_about_11_4m_parameters():
    m = create_model("mail", in_chans=[3, 3], num_classes=[2, 2], img_size=128)
    n = sum(p.numel() for p in m.parameters())
    print(f"MAIL 2 modalities, 128 px imagenet stem, 2+2 classes: {n} parameters")
    assert m.stem_kind == "imagenet" and m.widths == [64, 128, 256, 512]
    assert 8e6 < n < 15e6
    # no weight sharing across branches; one EMCAM per stage
    assert m.branches[0].stages[0][0].emila1.proj.weight is not m.branches[1].stages[0][0].emila1.proj.weight
    assert len(m.emcams) == 4


def test_dropout_placement_and_mail_is_deterministic_in_eval():
    m = MAIL([1, 1], [2, 2], widths=TINY)
    drops = [d for d in m.branches[0].drops]
    assert not isinstance(drops[0], Dropout) and all(isinstance(d, Dropout) and d.p == 0.25 for d in drops[1:])
    assert not m.stochastic_at_eval
    m.eval()
    xs = _xs([1, 1], 16)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(m(xs), m(xs)))
    m.train()
    with torch.no_grad():
        assert not torch.equal(m(xs)[0], m(xs)[0])  # dropout active in training


def test_state_dict_round_trip_reproduces_outputs():
    a = MAIL([1, 1], [2, 2], widths=TINY).eval()
    b = MAIL([1, 1], [2, 2], widths=TINY).eval()
    b.load_state_dict(a.state_dict())
    xs = _xs([1, 1], 16)
    with torch.no_grad():
        assert torch.equal(a(xs)[1], b(xs)[1])
    assert not any(k.endswith("dct.matrix") for k in a.state_dict())


@pytest.mark.parametrize("kwargs,match", [
    (dict(in_chans=[], num_classes=[2]), "in_chans"),
    (dict(in_chans=[3, 0], num_classes=[2, 2]), "in_chans"),
    (dict(in_chans=[3], num_classes=["a"]), "num_classes"),
    (dict(in_chans=[3], num_classes=[2], widths=(16, 32)), "4 stage widths"),
    (dict(in_chans=[3], num_classes=[2], drop_rate=1.0), "drop_rate"),
    (dict(in_chans=[3], num_classes=[2], rpf_fraction=-0.1), "rpf_fraction"),
    (dict(in_chans=[3], num_classes=[2], stem="resnet"), "unknown stem"),
    (dict(in_chans=[3], num_classes=[2], widht=(16, 32, 32, 64)), "unknown argument.*widht"),
    (dict(in_chans=[3], num_classes=[2], self=1), "unknown argument.*self"),  # a config key, not the instance
    (dict(in_chans=[3]), "missing argument.*num_classes"),
])
def test_bad_arguments_give_one_line_model_errors(kwargs, match):
    with pytest.raises(ModelError, match=match):
        create_model("mail", **kwargs)


def test_bad_inputs_name_the_modality_and_expected_vs_got():
    m = MAIL([1, 3], [2, 2], widths=TINY).eval()
    with pytest.raises(ModelError, match="list of 2 tensors .*got 1"):
        m(_xs([1], 16))
    with pytest.raises(ModelError, match="modality 1: expected 3 channels, got 1"):
        m(_xs([1, 1], 16))
    with pytest.raises(ModelError, match="list of 2 tensors"):
        m(torch.rand(2, 1, 16, 16))
    with pytest.raises(ModelError, match="modality 0: expected a"):
        m([torch.rand(1, 16, 16), torch.rand(1, 3, 16, 16)])
    with pytest.raises(ModelError, match="modality 1: image size .*differs"):
        m([torch.rand(2, 1, 16, 16), torch.rand(2, 3, 32, 32)])
    with pytest.raises(ModelError, match="modality 1: batch size 3 differs"):
        m([torch.rand(2, 1, 16, 16), torch.rand(3, 3, 16, 16)])


def test_registry_lists_both_models():
    names = list_models()
    assert "mail" in names and "robust_mail" in names


def _robust(**kw):
    return create_model("robust_mail", in_chans=[1, 3], num_classes=[2, 3], img_size=16, widths=TINY, **kw).eval()


def test_robust_mail_has_all_three_defences_by_default():
    from mailnet.layers.emila import EMILA
    from mailnet.layers.rpf import RPFConv2d

    m = _robust()
    assert m.config["rpf_fraction"] == 0.25 and m.config["attention_noise"] and m.config["mc_dropout"]
    emilas = [mod for mod in m.modules() if isinstance(mod, EMILA)]
    assert emilas and all(e.attention_noise and isinstance(e.msgdc.bn_dw3, torch.nn.BatchNorm2d) for e in emilas)
    assert all(isinstance(e.msgdc.pointwise, RPFConv2d) and e.msgdc.dw5.n_random > 0 for e in emilas)
    assert all(e.noise is not None for e in m.emcams)
    assert all(d.mc for br in m.branches for d in br.drops[1:])
    assert m.stochastic_at_eval


def test_robust_mail_is_random_in_eval_mode_and_replayable_with_a_seed():
    m = _robust()
    xs = _xs([1, 3], 16)
    before = {k: v.clone() for k, v in m.state_dict().items() if "running" in k}
    with torch.no_grad():
        m.seed_noise(11)
        a = m(xs)
        b = m(xs)  # next draw
        m.seed_noise(11)
        a2 = m(xs)  # the first draw again
        m.seed_noise(12)
        c = m(xs)
    assert not torch.equal(a[0], b[0])
    assert all(torch.equal(x, y) for x, y in zip(a, a2))
    assert not torch.equal(a[0], c[0])
    # BatchNorm stays in eval mode: running statistics untouched by the random forwards
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())


def test_replayed_draw_gives_identical_input_gradients():
    m = _robust()
    xs = [x.requires_grad_(True) for x in _xs([1, 3], 16)]
    grads = []
    for _ in range(2):
        m.seed_noise(5)
        loss = sum(o.sum() for o in m(xs))
        grads.append(torch.autograd.grad(loss, xs))
    assert all(torch.equal(g1, g2) for g1, g2 in zip(*grads))


@pytest.mark.parametrize("on", ["rpf_fraction", "attention_noise", "mc_dropout"])
def test_each_defence_alone_makes_eval_random_and_all_off_is_deterministic(on):
    off = dict(rpf_fraction=0.0, attention_noise=False, mc_dropout=False)
    xs = _xs([1, 3], 16)
    det = _robust(**off)
    assert not det.stochastic_at_eval
    with torch.no_grad():
        assert all(torch.equal(x, y) for x, y in zip(det(xs), det(xs)))
    only = _robust(**{**off, on: ROBUST_DEFAULTS[on]})
    assert only.stochastic_at_eval
    with torch.no_grad():
        assert not torch.equal(only(xs)[0], only(xs)[0])


def test_robust_mail_trains_every_parameter():
    m = _robust().train()
    m.seed_noise(0)
    sum(o.sum() for o in m(_xs([1, 3], 16, b=4))).backward()
    params = dict(m.named_parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params.values())
    zero = [n for n, p in params.items() if p.grad.abs().sum() == 0]
    # clipping in the noisy attention can zero a gradient on a given draw, but not for most parameters
    assert len(zero) < 0.05 * len(params), zero


def test_robust_mail_at_expected_draws_is_deterministic_and_differs_from_a_draw():
    from mailnet.attacks.transfer import ExpectedDraw

    m = _robust()
    xs = _xs([1, 3], 16)
    surrogate = ExpectedDraw(m)
    with torch.no_grad():
        a, b = surrogate(xs), surrogate(xs)
        drawn = m(xs)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], drawn[0])
    assert not torch.equal(m(xs)[0], m(xs)[0])  # the model itself is random again afterwards
