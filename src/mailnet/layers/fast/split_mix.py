"""EMILA's mix without the concatenation and the channel shuffle (narrow units on a CPU).

``mix(shuffle(cat[P, D3, D5]))`` is linear, so it equals ``W_P P + W_3 D3 + W_5 D5``, where ``W = [W_P | W_3 | W_5]``
is the 2-group mix weight written as a dense matrix with its columns put back in concatenation order
(:func:`mailnet.layers.fast.fused_msgdc.unshuffle_columns`). Three dense 1x1 convs on the branch outputs replace a
``cat``, a shuffle copy and a grouped 1x1 conv, in the forward pass and in the backward pass (where the branches'
gradients also arrive dense instead of as strided slices of the concatenated one). In MAIL the grouped 1x1 branch
``P = G x`` is itself linear, so ``W_P P = (W_P G) x``: one dense 1x1 conv on x replaces two convs.

The dense form does up to twice the multiply-adds of the 2-group mix, while the copies it saves scale with the
activations alone, so it pays only where channels are few and maps large: one EMILA (forward + backward, batch 64,
one thread) took 0.76x the shuffled form's time at 64 channels / 28 px, 0.94-1.00x at 128 channels, 1.16-1.49x
beyond (``benchmarks/adhoc/split_mix_ab.py units``). Used in the units of at most :data:`SPLIT_MIX_MAX_CHANNELS`
channels of a whole MAIL on a CPU (batch 64, ``split_mix_ab.py step`` and ``attack``, BENCHMARKS.md): training step
0.90x (two threads) / 0.96x (one) at 28 px and 0.94x at 128 px, attack step 0.86-0.92x (Robust-MAIL 0.90x),
no-grad inference 0.90-0.99x; with the split form in every unit instead, the training step gained nothing
(1.01-1.03x). Not used on other devices (not timed there). Parameters, state dict and function are the
reference's (equal within float rounding, ``tests/test_fast_equivalence.py``).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from mailnet.layers.fast.bn_fold import bn_foldable, bn_sources, cache_of, fold_bn, use_folded
from mailnet.layers.fast.fast_msgdc import FastMSGDC
from mailnet.layers.fast.fused_msgdc import dense_columns, unshuffle_columns
from mailnet.layers.fast.ops import pointwise_conv
from mailnet.utils import overridden

SPLIT_MIX_MAX_CHANNELS = 128  # largest EMILA width (mix output channels) that takes the split form

_FORCE: list[tuple[bool | None, int]] = [(None, SPLIT_MIX_MAX_CHANNELS)]


def split_mix_wanted(emila: torch.nn.Module, x: torch.Tensor) -> bool:
    """A CPU pass through a narrow unit, where it was measured to help; never while traced (ONNX graphs and MAC
    counts keep MAIL's own operators); or as forced."""
    if torch.jit.is_tracing() or not isinstance(emila.msgdc, FastMSGDC):
        return False
    force, max_channels = _FORCE[0]
    narrow = emila.mix.out_channels <= max_channels
    if force is not None:
        return force and narrow
    return x.device.type == "cpu" and narrow


@contextmanager
def split_mix_form(enabled: bool | None, max_channels: int = SPLIT_MIX_MAX_CHANNELS) -> Iterator[None]:
    """Inside the block, use the split form in every unit of at most ``max_channels`` output channels (True), in
    none (False), or where the automatic rule says (None). For tests of both forms and A/B timings."""
    with overridden(_FORCE, (enabled, int(max_channels))):
        yield


def split_weights(emila: torch.nn.Module, mix_weight: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(W_first, W_3, W_5) as dense (out, in) matrices; W_first acts on x itself when the grouped 1x1 branch is
    linear (``W_P G``), else on that branch's output. Differentiable in the parameters."""
    m = emila.msgdc
    dense = unshuffle_columns(dense_columns(mix_weight, emila.mix.groups), emila.shuffle.groups)
    w_p, w_3, w_5 = dense.split([m.out_chans, m.in_chans, m.in_chans], dim=1)
    if m.pointwise_is_linear():
        w_p = w_p @ dense_columns(m.pointwise.weight, m.groups)
    # column slices are strided; oneDNN takes a slower path for a non-contiguous weight
    return w_p.contiguous(), w_3.contiguous(), w_5.contiguous()


def split_mix(emila: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``emila.mix_bn(emila.mix(emila.shuffle(emila.msgdc(x))))`` in the split form (module docstring)."""
    m = emila.msgdc
    folded = use_folded(emila) and bn_foldable(emila.mix_bn)
    if folded:
        sources = [m.pointwise.weight, emila.mix.weight, *bn_sources(emila.mix_bn)]

        def build():
            w, b = fold_bn(emila.mix.weight, emila.mix_bn)
            return (*split_weights(emila, w), b)

        w_p, w_3, w_5, bias = cache_of(emila).get("split_mix", sources, build)
    else:
        (w_p, w_3, w_5), bias = split_weights(emila, emila.mix.weight), None
    if m.pointwise_is_linear():
        y = pointwise_conv(x, w_p, bias, m.stride)
        d3 = m.branch("dw3", m.dw3, m.bn_dw3, x)
        d5 = m.branch("dw5", m.dw5, m.bn_dw5, x)
    else:
        p, d3, d5 = m.branches(x)
        y = pointwise_conv(p, w_p, bias)
    y = y + pointwise_conv(d3, w_3, None)
    y = y + pointwise_conv(d5, w_5, None)
    return y if folded else emila.mix_bn(y)
