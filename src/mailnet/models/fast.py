"""The fast MAIL: the reference modules swapped, in place, for equivalents that compute the same function faster.

    model = create_model("mail", ...)        # reference implementation
    to_fast(model)                           # same object, same parameters, faster forward/backward
    to_reference(model)                      # back again (e.g. to check a result against the reference)

Nothing is copied or re-initialised: each module's class is switched between the reference class and a fast
subclass that only overrides ``forward`` (both classes have identical ``__init__`` state), so parameter names,
shapes and values, buffers, hooks and optimiser references all stay as they are, and a state dict saved from either
loads into the other. The fast classes (:mod:`mailnet.layers.fast`) are:

- ``FastMAIL``: inputs made channels-last once at the entry, the stem's BN folded at inference;
- ``FastERLA``, ``FastEMILA``, ``FastMSGDC``: channels-last convs, shuffle kept in NHWC, 2 instead of 4 pooling
  reductions in the channel attention, BN folded into the 1x1 convs at inference, fused residual add + ReLU;
- ``FastEMCAM`` / ``FastMSGDCProjection``: collapsed frequency-branch algebra (one full-size sum and sigmoid), the
  channel DCT as one matrix product on NHWC, Mop on pooled descriptors as one C x C matrix;
- at inference, the M modality streams' ERLA blocks run as one (:mod:`mailnet.layers.fast.stacked`): the same
  multiply-adds in M times fewer operator calls.

Parameters are also moved to channels-last memory (4-D conv weights); their values and shapes are unchanged.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from mailnet.layers.emcam import EMCAM
from mailnet.layers.emila import EMILA
from mailnet.layers.erla import ERLA
from mailnet.layers.fast import FastEMCAM, FastEMILA, FastERLA, FastMSGDC, FastMSGDCProjection
from mailnet.layers.fast.bn_fold import FoldCacheOwner, cache_of, use_folded
from mailnet.layers.fast.fused_msgdc import fusion_wanted
from mailnet.layers.fast.ops import conv_bn, to_channels_last
from mailnet.layers.fast.stacked import StackedERLA, block_sources, stackable, stacking_wanted
from mailnet.layers.noise import Dropout
from mailnet.layers.msgdc import MSGDC, MSGDCProjection
from mailnet.models.mail import BLOCKS_PER_STAGE, MAIL


class FastMAIL(FoldCacheOwner, MAIL):
    """:class:`MAIL` whose forward keeps every activation channels-last and folds the stem's BN at inference."""

    def stem_forward(self, branch: nn.Module, x: torch.Tensor) -> torch.Tensor:
        stem = branch.stem
        h = conv_bn(self, f"stem{id(branch)}", stem[0], stem[1], to_channels_last(branch.norm(x)))
        h = torch.relu_(h)
        for layer in list(stem)[3:]:
            h = layer(h)
        return h

    def forward_features(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        self.check_inputs(xs)
        hs = [self.stem_forward(br, x) for br, x in zip(self.branches, xs)]
        stacked = self.streams_stackable(hs[0])
        for s, emcam in enumerate(self.emcams):
            if stacked:  # all branches' blocks in one set of calls; at inference the dropout is the identity
                h = to_channels_last(torch.cat(hs, dim=1))
                for b in range(BLOCKS_PER_STAGE):
                    h = self.stacked_block(s, b)(h)
                hs = list(h.split(self.widths[s], dim=1))
            else:
                hs = [br.stages[s][0](h) for br, h in zip(self.branches, hs)]
                hs = [to_channels_last(br.drops[s](h)) for br, h in zip(self.branches, hs)]
                for b in range(1, BLOCKS_PER_STAGE):
                    hs = [br.stages[s][b](h) for br, h in zip(self.branches, hs)]
            hs = emcam(hs)
        return torch.cat([h.mean(dim=(2, 3)) for h in hs], dim=1)

    def streams_stackable(self, h: torch.Tensor) -> bool:
        """Whether the branches run stacked (:mod:`mailnet.layers.fast.stacked`): wanted for ``h`` (by default
        inference at small batches on a CPU or a CUDA GPU), several modalities, no parameter gradients,
        deterministic blocks, no dropout at eval, no tracer (ONNX export and MAC counts see the per-branch graph),
        not the forced fused-MSGDC form."""
        if (len(self.branches) < 2 or not stacking_wanted(h) or not use_folded(self) or torch.jit.is_tracing()
                or fusion_wanted(h)):
            return False
        for br in self.branches:
            if any(isinstance(d, Dropout) and d.mc and d.p > 0 for d in br.drops):
                return False
            if not all(type(blk) is FastERLA and stackable(blk) for stage in br.stages for blk in stage):
                return False
        return True

    def stacked_block(self, s: int, b: int) -> StackedERLA:
        """The cached stacked weights of block ``b`` of stage ``s`` (rebuilt when any branch's weights change)."""
        blocks = [br.stages[s][b] for br in self.branches]
        sources = [t for blk in blocks for t in block_sources(blk)]
        return cache_of(self).get(f"stacked{s}.{b}", sources, lambda: StackedERLA.build(blocks))


# reference class -> fast class; the order matters only for readability (classes are matched exactly).
FAST_CLASSES: dict[type, type] = {
    MAIL: FastMAIL,
    ERLA: FastERLA,
    EMILA: FastEMILA,
    MSGDC: FastMSGDC,
    MSGDCProjection: FastMSGDCProjection,
    EMCAM: FastEMCAM,
}
REFERENCE_CLASSES: dict[type, type] = {fast: ref for ref, fast in FAST_CLASSES.items()}


def _swap(model: nn.Module, table: dict[type, type]) -> int:
    n = 0
    for m in model.modules():
        target = table.get(type(m))
        if target is not None:
            m.__class__ = target  # same __init__ state by construction: the fast class only overrides methods
            m.__dict__.pop("_fold_cache", None)
            n += 1
    return n


def to_fast(model: nn.Module) -> nn.Module:
    """Switch every MAIL building block inside ``model`` to its fast equivalent, in place; returns ``model``.

    Works on a whole MAIL (or Robust-MAIL: its random parts are called in the reference's order, so seeded draws
    replay identically) and on any model that contains the blocks. Parameters move to channels-last memory.
    """
    _swap(model, FAST_CLASSES)
    model.to(memory_format=torch.channels_last)
    return model


def to_reference(model: nn.Module) -> nn.Module:
    """Undo :func:`to_fast`, in place: the reference classes and contiguous (NCHW) parameters; returns ``model``."""
    _swap(model, REFERENCE_CLASSES)
    model.to(memory_format=torch.contiguous_format)
    return model


def is_fast(model: nn.Module) -> bool:
    """True when some block of ``model`` uses a fast implementation."""
    return any(type(m) in REFERENCE_CLASSES for m in model.modules())
