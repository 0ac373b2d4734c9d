"""Adversarial examples for adversarial training (Madry et al. 2018; the fast FGSM-RS of Wong et al. 2020).

The trainer calls ``adversarial_batch`` once per training batch and trains on what it returns instead of (or
next to) the clean images.

BatchNorm: the attack runs with the model in *train* mode, so BatchNorm normalises with the statistics of the
batch being attacked, exactly as the training step that follows will; the BN running statistics (and
``num_batches_tracked``) are saved before the attack and restored after it, so the several attack passes do not
pollute them; only the training step's own forward updates them. Dropout and any defence randomness stay as they
are in train mode. Parameters get no gradients from the attack (only input gradients are taken).
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
import torch.nn as nn

from mailnet.attacks.eps import per_modality
from mailnet.attacks.pgd import fgsm, pgd
from mailnet.errors import ConfigError

METHODS = ("pgd", "fgsm-rs")
DEFAULT_STEPS = 7  # train.adv.steps' default (mailnet.config.DEFAULTS): Madry et al.'s CIFAR training used 7


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Restore every BatchNorm's running statistics on exit."""
    saved = []
    for mod in model.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.track_running_stats:
            saved.append((mod, [b.detach().clone() if b is not None else None
                                for b in (mod.running_mean, mod.running_var, mod.num_batches_tracked)]))
    try:
        yield
    finally:
        with torch.no_grad():
            for mod, (mean, var, count) in saved:
                for buf, old in ((mod.running_mean, mean), (mod.running_var, var), (mod.num_batches_tracked, count)):
                    if buf is not None and old is not None:
                        buf.copy_(old)


def adversarial_batch(model: nn.Module, images: Sequence[torch.Tensor], labels: Sequence[torch.Tensor],
                      masks: Sequence[torch.Tensor] | None = None, method: str = "pgd",
                      eps: float | Sequence[float] = 4 / 255, steps: int = DEFAULT_STEPS,
                      alpha: float | Sequence[float] | None = None) -> list[torch.Tensor]:
    """Adversarial versions of one training batch, one tensor per modality, within ``eps`` (L-inf, per modality
    allowed) of ``images`` and inside [0, 1]; detached, on the images' device.

    ``method='pgd'``: ``steps`` steps of ``alpha`` (default 2.5 * eps / steps) from a random start, cross-entropy
    summed over the heads (masked rows excluded). ``method='fgsm-rs'``: one step of ``alpha`` (default 1.25 * eps)
    from a uniform random start (``steps`` ignored). The model's train/eval mode is kept (see the module note on
    BatchNorm); random starts come from torch's global generator, so ``seed_everything`` makes runs repeatable.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown adversarial-training method {method!r}; choose one of {', '.join(METHODS)}")
    eps_m = per_modality(eps, len(images), where="--adv-eps")
    seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
    train = model.training
    with frozen_bn_stats(model):
        if method == "fgsm-rs":
            return fgsm(model, images, labels, masks, eps_m, random_start=True, alpha=alpha, seed=seed,
                        train_mode=train)
        if steps < 1:
            raise ConfigError(f"--adv-steps must be >= 1, got {steps}")
        return pgd(model, images, labels, masks, eps_m, steps=steps, alpha=alpha, random_start=True, restarts=1,
                   seed=seed, train_mode=train)


def make_adversary(adv_cfg: dict):
    """The trainer's per-batch hook from the config's ``train.adv`` block
    (``{"method": "pgd"|"fgsm-rs", "eps": "4/255", "steps": 7, "alpha": None}``):
    ``adversary(net, images, labels, masks) -> adversarial images``. A DistributedDataParallel wrapper is looked
    through (the attack's extra forwards must not take part in gradient synchronisation)."""
    from mailnet.attacks.eps import parse_eps

    method = adv_cfg.get("method")
    if method not in METHODS:
        raise ConfigError(f"train.adv.method: unknown method {method!r}; choose one of {', '.join(METHODS)}")
    eps = parse_eps(adv_cfg.get("eps", "4/255"), where="train.adv.eps")
    steps = adv_cfg.get("steps", DEFAULT_STEPS)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"train.adv.steps: expected an integer >= 1, got {steps!r}")
    alpha_raw = adv_cfg.get("alpha")
    alpha = None if alpha_raw in (None, "") else parse_eps(alpha_raw, where="train.adv.alpha")

    def adversary(net: nn.Module, images, labels, masks=None) -> list[torch.Tensor]:
        model = net.module if isinstance(net, nn.parallel.DistributedDataParallel) else net
        return adversarial_batch(model, images, labels, masks, method=method, eps=eps, steps=steps, alpha=alpha)

    adversary.settings = {"method": method, "eps": eps, "steps": steps if method == "pgd" else 1, "alpha": alpha}
    return adversary
