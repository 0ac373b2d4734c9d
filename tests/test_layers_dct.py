import numpy as np
import pytest
import scipy.fft
import torch

from mailnet.layers.dct import ChannelDCT, dct_matrix


@pytest.mark.parametrize("n", [1, 3, 16, 64, 512])
def test_dct_matrix_is_orthonormal(n):
    d = dct_matrix(n, torch.float64)
    eye = torch.eye(n, dtype=torch.float64)
    assert torch.allclose(d @ d.T, eye, atol=1e-10)
    assert torch.allclose(d.T @ d, eye, atol=1e-10)


@pytest.mark.parametrize("n", [2, 7, 32, 128])
def test_dct_matrix_matches_scipy_ortho_dct2(n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 5))
    ref = scipy.fft.dct(x, type=2, norm="ortho", axis=0)
    ours = dct_matrix(n, torch.float64).numpy() @ x
    np.testing.assert_allclose(ours, ref, atol=1e-10)


def test_channel_dct_transforms_each_pixel_along_channels_and_is_not_in_state_dict():
    m = ChannelDCT(24)
    x = torch.randn(2, 24, 3, 4)
    ref = scipy.fft.dct(x.numpy().astype(np.float64), type=2, norm="ortho", axis=1)
    np.testing.assert_allclose(m(x).numpy(), ref, atol=1e-5)
    assert "matrix" not in m.state_dict()
    assert m.matrix.requires_grad is False
    with pytest.raises(ValueError, match="24 channels"):
        m(torch.randn(1, 8, 2, 2))
