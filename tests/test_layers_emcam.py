import numpy as np
import pytest
import torch

from mailnet.layers.emcam import EMCAM
from mailnet.layers.noise import seed_noise


class _Times(torch.nn.Module):
    """Stand-in for Mop: t -> k * t."""

    def __init__(self, k: float):
        super().__init__()
        self.k = k

    def forward(self, t):
        return self.k * t


def _inputs(m, c=16, size=6, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, c, size, size, generator=g) for _ in range(m)]


@pytest.mark.parametrize("m", [1, 2, 3])
def test_emcam_shapes_maps_and_initial_output(m):
    e = EMCAM(16, m).eval()
    xs = _inputs(m)
    a_f, a_s = e.frequency_map(xs), e.spatial_map(xs)
    assert a_f.shape == (2, 16, 6, 6) and a_s.shape == (2, 16, 1, 1)
    a = e.attention_map(xs)
    assert torch.allclose(a, e.fuse(a_f, a_s)) and (a > 0).all() and (a < 1).all()
    ys = e(xs)
    assert len(ys) == m
    for x, y in zip(xs, ys):  # alpha starts at 1, so y = x * A
        assert torch.allclose(y, x * a, atol=1e-6)


def test_emcam_mixes_modalities_and_would_not_without_cross_terms():
    xs = _inputs(2)
    changed = [xs[0], xs[1] + 1.0]
    e = EMCAM(16, 2).eval()
    assert not torch.allclose(e(xs)[0], e(changed)[0])
    # both branches carry the cross-modal information on their own
    assert not torch.allclose(e.frequency_map(xs), e.frequency_map(changed))
    assert not torch.allclose(e.spatial_map(xs), e.spatial_map(changed))
    e.cross_modal = False
    assert torch.equal(e(xs)[0], e(changed)[0])
    assert not torch.allclose(e(xs)[1], e(changed)[1])


def test_spatial_chain_follows_the_cross_modal_ring():
    e = EMCAM(4, 3)
    e.mop = _Times(0.0)  # strip Mop so only the skips remain
    s1, s2, s3 = (torch.full((1, 4, 1, 1), v) for v in (1.0, 10.0, 100.0))
    c1, c2, c3 = e.chain([s1, s2, s3])
    assert c1.flatten()[0] == 1 + 10                    # s1' = s1 + s2
    assert c2.flatten()[0] == 10 + 11 + 100             # s2' = s2 + s1' + s3
    assert c3.flatten()[0] == 100 + 121 + 11            # s3' = s3 + s2' + s1'
    d1, d2 = e.chain([s1, s2])
    assert d1.flatten()[0] == 11 and d2.flatten()[0] == 10 + 11  # M = 2: spec's two formulas
    (o,) = e.chain([s1])
    assert o.flatten()[0] == 1


def test_mop_counts_twice_in_the_chain():
    e = EMCAM(4, 1)
    e.mop = _Times(3.0)
    (o,) = e.chain([torch.ones(1, 4, 1, 1)])
    assert torch.all(o == 1 + 2 * 3)


def test_robust_emcam_gate_is_noisy_replayable_and_bounded():
    e = EMCAM(16, 2, attention_noise=True).eval()
    xs = _inputs(2)
    a = e.attention_map(xs)
    seed_noise(e, 4)
    g1 = e.gate(a)
    g2 = e.gate(a)
    assert not torch.equal(g1, g2) and (g1 >= 0).all() and (g1 <= a).all()
    seed_noise(e, 4)
    assert torch.equal(e.gate(a), g1)
    assert isinstance(e.noise.weight, torch.nn.Parameter)


def test_every_emcam_parameter_gets_a_gradient():
    for noisy in (False, True):
        e = EMCAM(16, 2, attention_noise=noisy)
        sum(y.sum() for y in e(_inputs(2))).backward()
        for name, p in e.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, (noisy, name)


def test_emcam_rejects_wrong_inputs():
    e = EMCAM(16, 2)
    with pytest.raises(ValueError, match="2 modalities got 1"):
        e(_inputs(1))
    with pytest.raises(ValueError, match="input 1"):
        e([torch.randn(2, 16, 6, 6), torch.randn(2, 8, 6, 6)])


def test_emcam_map_matches_the_spec_computed_by_hand():
    """A written out from spec sec. 2.3 in numpy (scipy's orthonormal DCT-II along channels), with every learnable
    scalar and vector moved off its initial 1 so that a swapped term or pooling would show."""
    from scipy.fft import dct

    torch.manual_seed(0)
    c, m = 16, 2
    e = EMCAM(c, m).double().eval()
    with torch.no_grad():
        e.freq_weights.copy_(torch.tensor([0.7, -0.4, 1.3]))
        e.gamma.fill_(0.8)
        e.lambdas.copy_(torch.rand(m, c) + 0.5)
    xs = [x.double() for x in _inputs(m, c=c)]
    with torch.no_grad():
        got = e.attention_map(xs).numpy()
        mop = [e.mop(x).numpy() for x in xs]  # Mop is its own layer; the formulas around it are what is checked
    w, b = e.freq_fc.weight.detach().numpy(), e.freq_fc.bias.detach().numpy()

    def mop_of(v):
        with torch.no_grad():
            return e.mop(torch.from_numpy(v)).numpy()

    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    f = lambda v: sig(v @ w.T + b)[:, :, None, None]  # noqa: E731  shared Linear(C, C) + sigmoid
    m1, m2, m3 = 0.7, -0.4, 1.3
    total = 0
    for x in xs:
        d = dct(x.numpy(), type=2, norm="ortho", axis=1)
        h1, l1, l2 = f(d.max(axis=(2, 3))), f(d.mean(axis=(2, 3))), f(d.min(axis=(2, 3)))
        high = h1 + (h1 - l1) + (d - l2)
        low = l1 + l2
        total = total + m1 * high + m2 * low + m3 * (high - low)
    a_f = sig(total)
    s = [p.max(axis=(2, 3), keepdims=True) + p.mean(axis=(2, 3), keepdims=True) for p in mop]
    s1 = s[0] + 2 * mop_of(s[0]) + s[1]
    s2 = s[1] + 2 * mop_of(s[1]) + s1
    lam = e.lambdas.detach().numpy()[:, None, :, None, None]
    a_s = sig(lam[0] * s1 + lam[1] * s2)
    want = sig(0.8 * a_f + lam[0] * a_s)
    assert np.abs(got - want).max() < 1e-6  # the DCT matrix is built in float32; a wrong term is ~1e-2
