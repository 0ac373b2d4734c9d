import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mailnet.layers.msgdc import MSGDC, MSGDCProjection
from mailnet.layers.rpf import RPFConv2d


@pytest.mark.parametrize("cin,cout,stride,size", [(16, 32, 1, 9), (32, 32, 2, 9), (3, 16, 2, 28), (24, 40, 1, 5)])
def test_msgdc_shapes_and_branch_order(cin, cout, stride, size):
    m = MSGDC(cin, cout, stride)
    x = torch.randn(2, cin, size, size)
    y = m(x)
    out = (size + stride - 1) // stride
    assert y.shape == (2, cout + 2 * cin, out, out) and m.out_channels == cout + 2 * cin
    # [grouped 1x1 | dw3x3 | dw5x5]
    assert torch.allclose(y[:, :cout], m.pointwise(x))
    assert torch.allclose(y[:, cout + cin:], F.conv2d(x, m.dw5.weight, None, stride, 2, groups=cin), atol=1e-6)


def test_group_count_uses_gcd_for_awkward_channel_counts():
    assert MSGDC(64, 128).groups == 16
    assert MSGDC(24, 40).groups == 8
    assert MSGDC(3, 64).groups == 1
    m = MSGDC(64, 128)
    assert m.pointwise.groups == 16 and m.dw3.groups == 64 and m.dw5.groups == 64
    assert all(c.bias is None for c in (m.pointwise, m.dw3, m.dw5))


def test_robust_options_add_branch_bn_and_random_filters():
    m = MSGDC(32, 64, bn=True, rpf_fraction=0.25)
    assert all(isinstance(b, nn.BatchNorm2d) for b in (m.bn_pointwise, m.bn_dw3, m.bn_dw5))
    assert all(isinstance(c, RPFConv2d) and c.n_random > 0 for c in (m.pointwise, m.dw3, m.dw5))
    assert MSGDC(32, 64).bn_dw3.__class__ is nn.Identity


def test_projection_preserves_shape_including_pooled_descriptors():
    m = MSGDCProjection(32)
    assert m(torch.randn(2, 32, 6, 6)).shape == (2, 32, 6, 6)
    assert m(torch.randn(2, 32, 1, 1)).shape == (2, 32, 1, 1)
