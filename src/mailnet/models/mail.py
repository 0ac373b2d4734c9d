"""MAIL (spec sec. 2) and Robust-MAIL (sec. 3): one ERLA backbone per modality, one shared EMCAM per stage,
global-average-pooled branches concatenated, one linear head per task.

    model = create_model("mail", in_chans=[1, 3], num_classes=[2, 5], img_size=28)
    logits = model([x_1, x_2])        # pixels in [0, 1]; -> [ (B, 2), (B, 5) ]

Robust-MAIL's randomness (random projection filters, modulated attention noise, MC dropout) is on in train *and*
eval mode. Replay a draw with ``model.seed_noise(seed)`` before the forward (see :mod:`mailnet.layers.noise`).
"""
from __future__ import annotations

import inspect
from typing import Sequence

import torch
import torch.nn as nn

from mailnet.errors import ModelError
from mailnet.layers.emcam import EMCAM
from mailnet.layers.erla import ERLA
from mailnet.layers.input_norm import InputNorm
from mailnet.layers.noise import Dropout, is_stochastic_at_eval, seed_noise, set_noise_generator
from mailnet.layers.stem import make_stem
from mailnet.models.inputs import (check_drop_rate, check_inputs, int_list, model_args, per_modality,
                                   reject_unknown)
from mailnet.models.registry import register_model

DEFAULT_WIDTHS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = 2


class MAILBranch(nn.Module):
    """One modality's backbone: InputNorm, stem, then 4 stages of 2 ERLA blocks (dropout after the first,
    strided, block of stages 2-4). EMCAM is not here: it is shared and sits in :class:`MAIL`."""

    def __init__(self, in_chans: int, stem: str, widths: Sequence[int], drop_rate: float, mc_dropout: bool,
                 input_mean: float | Sequence[float], input_std: float | Sequence[float], label: str = "input_",
                 **emila_kw):
        super().__init__()
        self.norm = InputNorm(in_chans, input_mean, input_std, label=label)
        self.stem = make_stem(stem, in_chans, widths[0])
        self.stages = nn.ModuleList()
        self.drops = nn.ModuleList()
        prev = widths[0]
        for s, w in enumerate(widths):
            stride = 1 if s == 0 else 2
            blocks = [ERLA(prev, w, stride, **emila_kw)]
            blocks += [ERLA(w, w, 1, **emila_kw) for _ in range(BLOCKS_PER_STAGE - 1)]
            self.stages.append(nn.ModuleList(blocks))
            self.drops.append(Dropout(drop_rate, mc=mc_dropout) if s > 0 and drop_rate > 0 else nn.Identity())
            prev = w


class MAIL(nn.Module):
    """MAIL for M >= 1 modalities and T >= 1 tasks.

    Args:
        in_chans: channels per modality (M entries; an int is one modality).
        num_classes: classes per task head (T entries, each >= 2; an int is one task); every head reads the
            concatenated pooled features.
        img_size: the input size the model is built for (one, or one per modality): it chooses the stem when
            ``stem="auto"`` (>= 96 px: imagenet), and other input sizes warn once (the model still runs).
        stem: ``auto`` / ``imagenet`` (7x7/2 + max-pool) / ``cifar`` (3x3/1).
        drop_rate: dropout after the first block of stages 2-4 (0.25).
        mc_dropout: keep that dropout active in eval mode (Monte-Carlo dropout).
        widths: stage widths (default ResNet-18's); smaller ones make tiny test models.
        groups: MSGDC group count (16; reduced by gcd where channels do not divide).
        rpf_fraction: random projection filter fraction in every EMILA's MSGDC (0 = off).
        attention_noise: Robust-MAIL's modulated noise in EMILA and EMCAM.
        msgdc_bn: BN in the three MSGDC branches (Robust-MAIL).
        noise_std: std of the Gaussian n behind the modulated noise (0.6).
        input_mean, input_std: InputNorm constants (pixels in [0, 1] -> (x - mean) / std): one value, one per
            channel (shared by every modality), or one list per modality, e.g. ``[[0.5], [0.485, 0.456, 0.406]]``.
        model_name: the registered name, for error messages (set by the registry's builders).

    Inputs: a list of M float ``(B, C_m, H, W)`` tensors in [0, 1] (see :mod:`mailnet.models.inputs`: integer
    images are refused, float64 is cast to the weights' dtype).
    """

    needs_equal_sizes = True  # the shared EMCAM multiplies one attention map into every branch

    def __init__(self, in_chans: Sequence[int], num_classes: Sequence[int], img_size: int | Sequence[int] | None = None,
                 stem: str = "auto", drop_rate: float = 0.25, mc_dropout: bool = False,
                 widths: Sequence[int] = DEFAULT_WIDTHS, groups: int = 16, rpf_fraction: float = 0.0,
                 attention_noise: bool = False, msgdc_bn: bool = False, noise_std: float = 0.6,
                 input_mean: float | Sequence[float] = 0.5, input_std: float | Sequence[float] = 0.5,
                 model_name: str = "mail"):
        super().__init__()
        self.model_name = name = model_name
        args = model_args(name, in_chans, num_classes, img_size, stem)
        self.in_chans, self.num_classes, self.img_sizes = args.in_chans, args.num_classes, args.img_sizes
        self.widths = int_list(name, "widths", widths)
        if len(self.widths) != 4:
            raise ModelError(f"{name}: widths needs 4 stage widths, got {len(self.widths)}")
        check_drop_rate(name, drop_rate)
        if not 0.0 <= rpf_fraction <= 1.0:
            raise ModelError(f"{name}: rpf_fraction must be in [0, 1], got {rpf_fraction}")
        if groups < 1:
            raise ModelError(f"{name}: groups must be >= 1, got {groups}")
        if noise_std < 0:
            raise ModelError(f"{name}: noise_std must be >= 0, got {noise_std}")
        self.stem_kind = args.stem
        self.img_size = img_size
        self.config = dict(drop_rate=float(drop_rate), mc_dropout=bool(mc_dropout), groups=int(groups),
                           rpf_fraction=float(rpf_fraction), attention_noise=bool(attention_noise),
                           msgdc_bn=bool(msgdc_bn), noise_std=float(noise_std))
        emila_kw = dict(groups=groups, msgdc_bn=msgdc_bn, rpf_fraction=rpf_fraction,
                        attention_noise=attention_noise, noise_std=noise_std)
        m = len(self.in_chans)
        means = per_modality(name, "input_mean", input_mean, m)
        stds = per_modality(name, "input_std", input_std, m)
        self.branches = nn.ModuleList(
            MAILBranch(c, self.stem_kind, self.widths, drop_rate, mc_dropout, means[i], stds[i],
                       label=f"{name}: modality {i}'s input_", **emila_kw)
            for i, c in enumerate(self.in_chans))
        self.emcams = nn.ModuleList(
            EMCAM(w, m, groups, attention_noise=attention_noise, noise_std=noise_std) for w in self.widths)
        self.num_features = m * self.widths[-1]
        self.heads = nn.ModuleList(nn.Linear(self.num_features, k) for k in self.num_classes)

    @property
    def num_modalities(self) -> int:
        return len(self.in_chans)

    def forward_features(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The concatenated global-average-pooled branch features, (B, M * widths[-1])."""
        self.check_inputs(xs)
        hs = [br.stem(br.norm(x)) for br, x in zip(self.branches, xs)]
        for s, emcam in enumerate(self.emcams):
            hs = [br.stages[s][0](h) for br, h in zip(self.branches, hs)]
            hs = [br.drops[s](h) for br, h in zip(self.branches, hs)]
            for b in range(1, BLOCKS_PER_STAGE):
                hs = [br.stages[s][b](h) for br, h in zip(self.branches, hs)]
            hs = self.fuse(emcam, hs)
        return torch.cat([h.mean(dim=(2, 3)) for h in hs], dim=1)

    def fuse(self, emcam: EMCAM, hs: list[torch.Tensor]) -> list[torch.Tensor]:
        """One stage's cross-modal attention (parallel EMCAM); baselines override only this step."""
        return emcam(hs)

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        feats = self.forward_features(xs)
        return [head(feats) for head in self.heads]

    def check_inputs(self, xs: Sequence[torch.Tensor]) -> None:
        """One clear line for the usual mistakes (see :func:`mailnet.models.inputs.check_inputs`)."""
        check_inputs(self, xs)

    # -- randomness ---------------------------------------------------------------------------------------------
    def set_noise_generator(self, generator: torch.Generator | None) -> None:
        """Draw every random number of this model (RPF kernels, attention noise, dropout) from ``generator``
        (``None``: torch's global RNG)."""
        set_noise_generator(self, generator)

    def seed_noise(self, seed: int, device: torch.device | str | None = None) -> torch.Generator:
        """Install a fresh generator seeded with ``seed`` (on the model's device) and return it; seeding again
        with the same value replays the same draws for the same inputs."""
        return seed_noise(self, seed, device)

    @property
    def stochastic_at_eval(self) -> bool:
        """True when the model's output is random in eval mode (Robust-MAIL, or MC dropout)."""
        return is_stochastic_at_eval(self)


def mail_defaults(names: Sequence[str] | None = None) -> dict:
    """The default values of ``MAIL.__init__``'s arguments (or of ``names`` among them), for the registry to record
    in checkpoints: the MAIL builders take them through ``**kwargs``."""
    params = inspect.signature(MAIL.__init__).parameters
    return {k: p.default for k, p in params.items()
            if p.default is not p.empty and k != "model_name" and (names is None or k in names)}


def _build(name: str, kwargs: dict, cls: type[MAIL] = MAIL, allowed: Sequence[str] | None = None) -> MAIL:
    """cls(**kwargs), with unknown or missing arguments reported as one-line ``ModelError``s; ``allowed``
    narrows the accepted arguments (default: every argument of ``MAIL.__init__`` but ``model_name``)."""
    internal = {"self", "model_name"}
    params = allowed if allowed is not None else set(inspect.signature(MAIL.__init__).parameters) - internal
    reject_unknown(name, kwargs, params)
    missing = [k for k in ("in_chans", "num_classes") if k not in kwargs]
    if missing:
        raise ModelError(f"{name}: missing argument(s) {', '.join(missing)}")
    return cls(**kwargs, model_name=name)


def _implementation(model: MAIL, fast: bool) -> MAIL:
    """``fast=True``: the equivalent fast blocks of :mod:`mailnet.models.fast` (same state dict); else the reference."""
    if not fast:
        return model
    from mailnet.models.fast import to_fast

    return to_fast(model)


@register_model(defaults=mail_defaults())
def mail(fast: bool = True, **kwargs) -> MAIL:
    """MAIL (spec sec. 2): deterministic in eval mode; standard dropout 0.25 in training.
    ``fast=False`` gives the straightforward reference implementation (identical state dict and function)."""
    return _implementation(_build("mail", kwargs), fast)


ROBUST_DEFAULTS = dict(rpf_fraction=0.25, attention_noise=True, msgdc_bn=True, mc_dropout=True)


@register_model(defaults={**mail_defaults(), **ROBUST_DEFAULTS})
def robust_mail(fast: bool = True, **kwargs) -> MAIL:
    """Robust-MAIL (spec sec. 3): MAIL with random projection filters (``rpf_fraction=0.25``) and BN in every
    EMILA's MSGDC, modulated attention noise in EMILA and EMCAM (``attention_noise=True``) and Monte-Carlo dropout
    (``mc_dropout=True``), all random in eval mode too. Each can be switched off for ablation
    (``rpf_fraction=0``, ``attention_noise=False``, ``mc_dropout=False``, ``msgdc_bn=False``).
    Replay a draw: ``model.seed_noise(s)`` before each forward that must see the same draw."""
    return _implementation(_build("robust_mail", {**ROBUST_DEFAULTS, **kwargs}), fast)
