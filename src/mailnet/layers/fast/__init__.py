"""Fast equivalents of MAIL's building blocks: same parameters (names, shapes, values), same mathematics, less
wall-clock time on CPU (channels-last memory, BatchNorm folded at inference, fewer intermediate tensors).

Each fast module subclasses its reference module and only replaces ``forward``; :func:`mailnet.models.fast.to_fast`
and :func:`mailnet.models.fast.to_reference` swap one for the other in place, keeping the very same parameters.
"""
from mailnet.layers.fast.bn_fold import FoldCache, fold_bn, use_folded
from mailnet.layers.fast.fast_emcam import FastEMCAM
from mailnet.layers.fast.fast_emila import FastEMILA
from mailnet.layers.fast.fast_erla import FastERLA
from mailnet.layers.fast.fast_msgdc import FastMSGDC, FastMSGDCProjection
from mailnet.layers.fast.fused_msgdc import fused_inference
from mailnet.layers.fast.split_mix import split_mix_form
from mailnet.layers.fast.stacked import stacked_streams

__all__ = ["FoldCache", "fold_bn", "use_folded", "FastEMCAM", "FastEMILA", "FastERLA", "FastMSGDC",
           "FastMSGDCProjection", "fused_inference", "split_mix_form", "stacked_streams"]
