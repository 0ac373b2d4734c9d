import torch

from mailnet.layers.channel_shuffle import ChannelShuffle, channel_shuffle, effective_groups


def test_shuffle_moves_channel_j_n_plus_i_to_i_g_plus_j():
    g, n = 4, 3
    x = torch.arange(g * n, dtype=torch.float32).view(1, g * n, 1, 1).expand(2, -1, 5, 5).contiguous()
    y = channel_shuffle(x, g)
    for j in range(g):
        for i in range(n):
            assert torch.equal(y[:, i * g + j], x[:, j * n + i])


def test_shuffle_is_a_permutation_undone_by_the_transposed_shuffle():
    x = torch.randn(2, 48, 3, 3)
    y = ChannelShuffle(16)(x)
    assert not torch.equal(y, x)
    assert torch.equal(channel_shuffle(y, 48 // 16), x)


def test_groups_fall_back_to_gcd_when_they_do_not_divide_channels():
    assert effective_groups(40, 16) == 8
    assert effective_groups(3, 16) == 1
    x = torch.randn(1, 40, 2, 2)
    assert torch.equal(channel_shuffle(x, 16), channel_shuffle(x, 8))
    x3 = torch.randn(1, 3, 2, 2)
    assert torch.equal(channel_shuffle(x3, 16), x3)
