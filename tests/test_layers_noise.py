import pytest
import torch
import torch.nn as nn

from mailnet.layers.noise import Dropout, ModulatedNoise, modulated_noise, seed_noise, set_noise_generator


def test_modulated_noise_formula():
    n = torch.tensor([-1.0, -0.5, 0.0, 2.0])
    assert torch.equal(modulated_noise(n, 2.0), torch.tensor([0.0, -0.5, 0.0, 12.0]))


def test_modulated_noise_clips_to_unit_interval_and_is_random_in_eval_mode():
    m = ModulatedNoise(0.6).eval()
    x = torch.full((4000,), 0.5)
    y1, y2 = m(x), m(x)
    assert y1.min() >= 0 and y1.max() <= 1 and not torch.equal(y1, y2)
    # E[n + n^2] = std^2 = 0.36 > 0: the clipped output is pushed up on average
    assert y1.mean() > 0.55
    assert not any(True for _ in m.parameters())
    t = ModulatedNoise(0.6, trainable=True)
    assert [p.shape for p in t.parameters()] == [torch.Size([])]


def test_standard_dropout_is_off_in_eval_and_mc_dropout_is_on():
    x = torch.ones(2000)
    std = Dropout(0.25, mc=False).eval()
    assert torch.equal(std(x), x)
    mc = Dropout(0.25, mc=True).eval()
    y = mc(x)
    kept = y[y != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1.0 / 0.75))
    assert (y == 0).float().mean().item() == pytest.approx(0.25, abs=0.05)
    with pytest.raises(ValueError):
        Dropout(1.0)


def test_seeding_a_module_tree_replays_every_draw_and_none_falls_back_to_global_rng():
    net = nn.Sequential(Dropout(0.5, mc=True), ModulatedNoise(0.6))
    x = torch.full((64,), 0.3)
    g = seed_noise(net, 3)
    assert all(m.generator is g for m in net)
    a = net(x)
    seed_noise(net, 3)
    assert torch.equal(net(x), a)
    set_noise_generator(net, None)
    torch.manual_seed(5)
    b = net(x)
    torch.manual_seed(5)
    assert torch.equal(net(x), b)


def test_noise_scale_ramps_the_std_and_zero_leaves_only_the_clip():
    from mailnet.layers.noise import set_noise_scale

    net = nn.Sequential(ModulatedNoise(0.6), nn.Identity(), ModulatedNoise(0.6, trainable=True))
    x = torch.linspace(-0.5, 1.5, 4000)
    assert set_noise_scale(net, 0.0) == 2
    assert torch.equal(net(x), x.clamp(0, 1))  # no noise at all, whatever the draw
    # a scale s draws exactly s times the full-scale Gaussian of the same seed
    set_noise_scale(net, 0.5)
    seed_noise(net, 3)
    half = net[0](torch.zeros(4000) + 0.5)
    set_noise_scale(net, 1.0)
    seed_noise(net, 3)
    n = torch.randn(4000, generator=torch.Generator().manual_seed(3)) * 0.6
    assert torch.allclose(half, (0.5 + modulated_noise(0.5 * n)).clamp(0, 1), atol=1e-6)
    assert torch.allclose(net[0](torch.zeros(4000) + 0.5), (0.5 + modulated_noise(n)).clamp(0, 1), atol=1e-6)
    assert set_noise_scale(nn.Linear(2, 2), 0.3) == 0
    with pytest.raises(ValueError):
        set_noise_scale(net, 1.5)


def test_expected_draws_puts_every_random_variable_at_its_mean_and_restores():
    from mailnet.layers.noise import expected_draws
    from mailnet.layers.rpf import RPFConv2d

    noise, drop = ModulatedNoise(0.6, weight=0.5), Dropout(0.25, mc=True).eval()
    conv = RPFConv2d(4, 8, 3, 1, 1, 1, 0.5)
    x = torch.tensor([0.0, 0.2, 0.95])
    with expected_draws(nn.Sequential(noise, drop, conv)):
        # E[w (n + n^2)] = w * std^2 = 0.5 * 0.36, then clipped to [0, 1] like a draw
        assert torch.allclose(noise(x), torch.tensor([0.18, 0.38, 1.0]))
        assert torch.equal(drop(x), x)
        w = conv.full_weight(x)
        assert torch.equal(w, conv.full_weight(x))  # no draw: the same kernel every call
        random_rows = [i for i in range(8) if w[i].abs().sum() == 0]
        assert len(random_rows) == conv.n_random == 4
    assert not (noise.expected or drop.expected or conv.expected)
    assert not torch.equal(noise(x), noise(x)) and not torch.equal(conv.full_weight(x), conv.full_weight(x))
