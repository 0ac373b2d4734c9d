"""Small channels-last helpers shared by the fast modules."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mailnet.layers.channel_shuffle import effective_groups
from mailnet.layers.fast.bn_fold import bn_foldable, folded_conv_bn, use_folded

CHANNELS_LAST = torch.channels_last


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """4-D tensors in NHWC memory order (a no-op when they already are): oneDNN's depthwise and grouped
    convolutions, and the 5x5 depthwise backward above all, are many times faster there than in NCHW."""
    return x.contiguous(memory_format=CHANNELS_LAST) if x.dim() == 4 else x


def shuffle_channels_last(v: torch.Tensor, groups: int) -> torch.Tensor:
    """:func:`mailnet.layers.channel_shuffle.channel_shuffle` done on the NHWC layout, so the result stays
    channels-last (the reference's reshape/transpose/reshape silently turns a channels-last tensor into NCHW)."""
    b, c, h, w = v.shape
    g = effective_groups(c, groups)
    if g == 1:
        return v
    t = v.permute(0, 2, 3, 1).reshape(b, h, w, g, c // g).transpose(3, 4).reshape(b, h, w, c)
    return t.permute(0, 3, 1, 2)


class _DenseGrad(torch.autograd.Function):
    """Identity forward; backward hands on the gradient as a dense channels-last tensor."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 (autograd protocol)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return grad.contiguous(memory_format=CHANNELS_LAST)


def dense_grad(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself, but its gradient reaches the layers below as one dense channels-last tensor.

    Why: the gradient of a branch that feeds ``torch.cat`` along channels is a strided slice of the concatenated
    gradient, and CPU BatchNorm backward on such a slice takes a generic path about 4x slower than on a dense
    NHWC tensor (it was a third of Robust-MAIL's training step, whose MSGDC branches each end in a BN). One copy
    of the gradient costs far less. Traced graphs and no-grad calls get ``x`` unchanged."""
    if not (x.requires_grad and torch.is_grad_enabled()) or torch.jit.is_tracing() or x.dim() != 4:
        return x
    return _DenseGrad.apply(x)


def conv_bn(owner: nn.Module, key: str, conv: nn.Module, bn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``bn(conv(x))``, with the BN folded into the conv's weight and bias at inference (eval mode, no grad).

    Anything that is not a plain ``nn.Conv2d`` followed by an ``nn.BatchNorm2d`` (a random projection conv, an
    ``Identity`` in place of the BN) runs as the reference does.
    """
    plain = type(conv) is nn.Conv2d
    if use_folded(owner) and plain and bn_foldable(bn):
        w, b = folded_conv_bn(owner, key, conv, bn)
        return conv_forward(conv, x, w, b)
    y = conv_forward(conv, x, conv.weight, conv.bias) if plain else conv(x)
    return y if isinstance(bn, nn.Identity) else bn(y)


# Below this batch size torch (2.x, CPU) sends non-depthwise convolutions to its im2col fallback instead of
# oneDNN, and that fallback runs a grouped conv as one call per group (plus a narrow and a cat per call).
SMALL_BATCH = 16


def conv_forward(conv: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.conv2d`` with ``conv``'s geometry, except that an unpadded 1x1 conv on a small CPU batch runs as one
    batched matrix product on the NHWC layout (:func:`pointwise_matmul`).

    Why: at batch 1 MAIL's ~600 grouped 1x1 convolution calls per forward were a third of its inference time in
    the im2col fallback (profile in BENCHMARKS.md); the matmul form computes the same sums in one call per conv.
    Traced graphs (ONNX export, MAC counts) keep the convolution."""
    if weight.shape[-2:] == (1, 1) and conv.padding in ((0, 0), 0) and conv.dilation == (1, 1):
        return pointwise_conv(x, weight, bias, conv.stride, conv.groups)
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def pointwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                   stride: int | tuple[int, int] = 1, groups: int = 1) -> torch.Tensor:
    """An unpadded 1x1 convolution: :func:`pointwise_matmul` on a small CPU batch (see :func:`conv_forward`),
    ``F.conv2d`` otherwise. ``weight`` is (out, in/groups, 1, 1) or, for ``groups=1``, a plain (out, in) matrix."""
    if weight.dim() == 2:
        weight = weight[..., None, None]
    stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
    if x.device.type == "cpu" and x.shape[0] < SMALL_BATCH and not torch.jit.is_tracing():
        return pointwise_matmul(x, weight, bias, stride, groups)
    return F.conv2d(x, weight, bias, stride, 0, 1, groups)


def pointwise_matmul(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, int],
                     groups: int) -> torch.Tensor:
    """A 1x1 convolution (``groups`` groups, ``stride`` = (sh, sw)) as a batched matmul; channels-last output."""
    if tuple(stride) != (1, 1):
        x = x[:, :, ::stride[0], ::stride[1]]
    b, c, h, w = x.shape
    out = weight.shape[0]
    rows = x.permute(0, 2, 3, 1).reshape(b * h * w, groups, c // groups).transpose(0, 1)  # (g, N, c/g)
    kernel = weight.reshape(groups, out // groups, c // groups).transpose(1, 2)  # (g, c/g, out/g)
    y = torch.bmm(rows, kernel).transpose(0, 1).reshape(b, h, w, out)
    if bias is not None:
        y = y + bias
    return y.permute(0, 3, 1, 2)


def spatial_max_plus(u: torch.Tensor, other: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(max over H x W, sum or mean over H x W), each (B, C): two reductions in one place."""
    mx = u.amax(dim=(2, 3))
    rest = u.sum(dim=(2, 3)) if other == "sum" else u.mean(dim=(2, 3))
    return mx, rest
