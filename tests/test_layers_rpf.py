import pytest
import torch
import torch.nn.functional as F

from mailnet.layers.noise import seed_noise
from mailnet.layers.rpf import RPFConv2d, make_conv, random_filter_indices


def test_random_filters_are_spread_evenly():
    assert random_filter_indices(64, 0.25).tolist() == list(range(0, 64, 4))
    assert random_filter_indices(10, 0.0).numel() == 0
    assert random_filter_indices(8, 1.0).tolist() == list(range(8))
    with pytest.raises(ValueError):
        random_filter_indices(8, 1.5)


def test_fraction_zero_gives_a_plain_conv():
    c = make_conv(8, 8, 3, 1, 8, 0.0)
    assert isinstance(c, torch.nn.Conv2d) and c.bias is None and c.padding == (1, 1)


def test_learned_filters_are_the_parameters_and_random_ones_are_redrawn_every_forward_even_in_eval():
    conv = RPFConv2d(16, 32, 1, groups=16, fraction=0.25).eval()
    rand = random_filter_indices(32, 0.25)
    learn = torch.tensor([i for i in range(32) if i not in set(rand.tolist())])
    assert conv.weight.shape == (24, 1, 1, 1)
    x = torch.randn(2, 16, 5, 5)
    y1, y2 = conv(x), conv(x)
    # learned output filters: deterministic and equal to an ordinary conv with the learned weights
    assert torch.equal(y1[:, learn], y2[:, learn])
    full = conv.full_weight(x)
    assert torch.equal(full[learn], conv.weight)
    assert torch.allclose(F.conv2d(x, full, None, 1, 0, 1, 16)[:, learn], y1[:, learn], atol=1e-6)
    # random output filters: a fresh draw each time
    assert not torch.allclose(y1[:, rand], y2[:, rand])


@pytest.mark.parametrize("k", [1, 3, 5])
def test_random_kernels_follow_normal_with_std_one_over_k(k):
    conv = RPFConv2d(256, 256, k, padding=k // 2, groups=256, fraction=1.0)
    seed_noise(conv, 0)
    w = conv.full_weight(torch.zeros(1))
    assert abs(w.mean().item()) < 3 * (1 / k) / w.numel() ** 0.5 + 1e-3
    assert w.std().item() == pytest.approx(1.0 / k, rel=0.1)


def test_seeded_generator_replays_the_same_kernels_and_gradients_reach_learned_weights():
    conv = RPFConv2d(8, 8, 3, padding=1, groups=8, fraction=0.5)
    x = torch.randn(1, 8, 6, 6)
    seed_noise(conv, 7)
    a = conv(x)
    seed_noise(conv, 7)
    b = conv(x)
    seed_noise(conv, 8)
    c = conv(x)
    assert torch.equal(a, b) and not torch.equal(a, c)
    a.sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
