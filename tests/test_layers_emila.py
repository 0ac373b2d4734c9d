import pytest
import torch
import torch.nn.functional as F

from mailnet.layers.channel_attention import ChannelAttention
from mailnet.layers.channel_shuffle import channel_shuffle
from mailnet.layers.emila import EMILA
from mailnet.layers.noise import seed_noise


def test_channel_attention_descriptor_and_gate():
    u = torch.randn(3, 8, 4, 5)
    flat = u.flatten(2)
    d = ChannelAttention.descriptor(u)
    assert torch.allclose(d, 2 * flat.amax(2) + flat.sum(2), atol=1e-4)
    ca = ChannelAttention(8)
    a = ca(u)
    assert a.shape == (3, 8, 1, 1) and (a > 0).all() and (a < 1).all()
    assert ca.mlp[0].out_features == 2 and ca.scale.dim() == 0


@pytest.mark.parametrize("cin,cout,stride,size", [(16, 16, 1, 8), (16, 32, 2, 9), (3, 16, 1, 7)])
def test_emila_shapes_and_plain_output_formula(cin, cout, stride, size):
    m = EMILA(cin, cout, stride).eval()
    x = torch.randn(2, cin, size, size)
    y = m(x)
    out = (size + stride - 1) // stride
    assert y.shape == (2, cout, out, out) and (y >= 0).all()
    assert m.mix.groups == 2
    u = m.mix_bn(m.mix(channel_shuffle(m.msgdc(x), 16)))
    a = torch.sigmoid(m.attention.scale * m.attention.logits(u))
    assert torch.allclose(y, F.relu(m.proj_bn(m.proj(x)) + u * a), atol=1e-5)
    assert torch.equal(m(x), y)  # deterministic without the robust options


def test_robust_emila_follows_the_noisy_formula_and_is_random_in_eval():
    torch.manual_seed(0)
    m = EMILA(16, 32, 2, msgdc_bn=True, attention_noise=True).eval()
    x = torch.randn(2, 16, 8, 8)
    seed_noise(m, 1)
    y1 = m(x)
    y2 = m(x)
    assert y1.shape == (2, 32, 4, 4) and not torch.equal(y1, y2)
    seed_noise(m, 1)
    assert torch.equal(m(x), y1)
    # with zero noise the robust path reduces to: z clipped, S = clip(r), out = u * (S*a)^3
    z0 = EMILA(16, 32, 2, attention_noise=True, noise_std=0.0).eval()
    u = z0.mix_bn(z0.mix(channel_shuffle(z0.msgdc(x), 16)))
    a = z0.attention.gate(z0.attention.logits(u).clamp(0, 1))
    r = F.relu(z0.proj_bn(z0.proj(x)) + u * a)
    assert torch.allclose(z0(x), u * (r.clamp(0, 1) * a) ** 3, atol=1e-6)


def test_every_emila_parameter_gets_a_gradient():
    m = EMILA(16, 32, 2)
    m(torch.randn(2, 16, 8, 8)).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
