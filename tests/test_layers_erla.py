import torch
import torch.nn as nn

from mailnet.layers.erla import ERLA


def test_erla_identity_shortcut_when_shape_is_kept():
    m = ERLA(16, 16, 1)
    assert isinstance(m.shortcut, nn.Identity)
    y = m(torch.randn(2, 16, 7, 7))
    assert y.shape == (2, 16, 7, 7) and (y >= 0).all()


def test_erla_projection_shortcut_when_stride_or_width_changes():
    m = ERLA(16, 32, 2)
    assert isinstance(m.shortcut, nn.Sequential)
    assert m.shortcut[0].stride == (2, 2) and m.emila1.proj.stride == (2, 2) and m.emila2.proj.stride == (1, 1)
    assert m(torch.randn(2, 16, 7, 7)).shape == (2, 32, 4, 4)
    assert isinstance(ERLA(16, 32, 1).shortcut, nn.Sequential)


def test_every_erla_parameter_gets_a_gradient_and_options_reach_both_emilas():
    m = ERLA(16, 32, 2)
    m(torch.randn(2, 16, 8, 8)).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    r = ERLA(16, 16, 1, attention_noise=True, rpf_fraction=0.25, msgdc_bn=True)
    assert r.emila1.attention_noise and r.emila2.attention_noise
    assert r.emila2.msgdc.pointwise.n_random == 4
