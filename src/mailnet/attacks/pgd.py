"""L-inf gradient attacks on multimodal, multi-head models: PGD (random start, restarts, EOT), BIM, MIM, FGSM.

Every attack takes a model with the registry's calling convention (``model(list_of_tensors) -> list_of_logits``),
pixels in [0, 1], and one budget per modality (0 keeps that modality clean, which is how the ``each`` threat is
expressed). After every step the perturbation is projected on the budget and the image clamped to [0, 1].
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from mailnet.attacks.eot import attack_mode, eot_gradients, expected_correctness
from mailnet.attacks.eps import per_modality
from mailnet.attacks.losses import correctness, objective
from mailnet.errors import ConfigError

Tensors = Sequence[torch.Tensor]


def _alphas(alpha: float | Sequence[float] | None, eps: list[float], steps: int, default_ratio: float) -> list[float]:
    if alpha is None:
        return [default_ratio * e / max(1, steps) for e in eps]
    return per_modality(alpha, len(eps), where="alpha")


def project(adv: torch.Tensor, clean: torch.Tensor, eps: float) -> torch.Tensor:
    """Back into the L-inf ball of radius ``eps`` around ``clean``, then into the pixel range [0, 1]."""
    return torch.min(torch.max(adv, clean - eps), clean + eps).clamp_(0.0, 1.0)


def _random_start(x: torch.Tensor, eps: float, gen: torch.Generator) -> torch.Tensor:
    noise = torch.rand(x.shape, generator=gen, device=gen.device, dtype=x.dtype).to(x.device)
    return (x + (2.0 * noise - 1.0) * eps).clamp_(0.0, 1.0)


def _check(images: Tensors, labels: Tensors, masks: Tensors | None) -> None:
    if isinstance(images, torch.Tensor):
        raise ConfigError("attacks take a list of image tensors, one per modality (wrap single-input models)")
    if isinstance(masks, (int, float, str)):  # pgd(model, xs, ys, 8/255): the budget landed in ``masks``
        raise ConfigError(f"masks: got {masks!r}, a budget? pass it by name: eps={masks!r}")
    if masks is not None and len(masks) != len(labels):
        raise ConfigError(f"{len(masks)} masks given for {len(labels)} tasks")
    for m, x in enumerate(images):
        if x.numel() and not (0 <= x.min() and x.max() <= 1):  # NaN fails both comparisons
            bad = "NaN pixels" if torch.isnan(x).any() else "pixels outside [0, 1]"
            raise ConfigError(f"modality {m}: attack inputs must be pixels in [0, 1], got {bad} (normalise inside "
                              "the model)")


def _counted(corr: torch.Tensor, masks: Tensors | None, task: int | None) -> torch.Tensor:
    """(T, B) correctness -> per row, how many of its counted heads (only ``task``'s, when given) are right;
    lower is better for the attacker."""
    weight = torch.ones_like(corr) if masks is None else torch.stack([m.to(corr.dtype) for m in masks])
    if task is not None:
        keep = torch.zeros_like(weight)
        keep[task] = 1
        weight = weight * keep
    return (corr * weight).sum(dim=0)


def _one_run(model: nn.Module, clean: list[torch.Tensor], labels: Tensors, masks: Tensors | None, eps: list[float],
             alphas: list[float], steps: int, random_start: bool, loss: str, eot: int, momentum: float | None,
             task: int | None, gen: torch.Generator, keep_best: bool = False) -> list[torch.Tensor]:
    perturbed = [e > 0 for e in eps]
    adv = [_random_start(x, e, gen) if (p and random_start) else x.clone() for x, e, p in zip(clean, eps, perturbed)]
    velocity = [torch.zeros_like(x) if p else None for x, p in zip(clean, perturbed)]
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []  # keep_best: (score, loss) of the iterate just evaluated

    def obj(logits: list[torch.Tensor]) -> torch.Tensor:
        value = objective(logits, labels, masks, loss=loss, task=task)
        if keep_best:
            seen.append((_counted(correctness(logits, labels), masks, task), value.detach()))
        return value

    # keep_best (deterministic models only, where one forward pass is the verdict): each row keeps the iterate
    # that scored lowest, so a row fooled at some step and un-fooled by a later overshoot stays fooled; among
    # equally scored iterates the one with the higher loss, so a fooled row keeps its most confidently wrong
    # point rather than one that barely crossed the boundary (the suite scores it again in another batch, where
    # float rounding alone could flip a row fooled by a hair).
    best = [a.clone() for a in adv] if keep_best else None
    rows = clean[0].shape[0]
    best_score = torch.full((rows,), float("inf"), device=clean[0].device) if keep_best else None
    best_loss = torch.full((rows,), float("-inf"), device=clean[0].device) if keep_best else None

    def keep(score: torch.Tensor, value: torch.Tensor) -> None:
        better = (score < best_score) | ((score == best_score) & (value > best_loss))
        for m in range(len(adv)):
            best[m][better] = adv[m][better].detach()
        best_score[better] = score[better]
        best_loss[better] = value[better]

    for _ in range(steps):
        grads, _ = eot_gradients(model, adv, perturbed, obj, draws=eot)
        if keep_best:
            keep(*seen.pop())
        for m, g in enumerate(grads):
            if g is None:
                continue
            if momentum is not None:  # MIM: accumulate L1-normalised gradients, step along the sign of the sum
                l1 = g.abs().flatten(1).mean(dim=1).clamp_min(1e-12).view(-1, *([1] * (g.dim() - 1)))
                velocity[m] = momentum * velocity[m] + g / l1
                g = velocity[m]
            adv[m] = project(adv[m] + alphas[m] * g.sign(), clean[m], eps[m])
    if keep_best:
        with torch.no_grad():
            logits = model(list(adv))
            keep(_counted(correctness(logits, labels), masks, task),
                 objective(logits, labels, masks, loss=loss, task=task))
        return best
    return [a.detach() for a in adv]


def pgd(model: nn.Module, images: Tensors, labels: Tensors, masks: Tensors | None = None,
        eps: float | Sequence[float] = 8 / 255, *, steps: int = 10, alpha: float | Sequence[float] | None = None,
        random_start: bool = True, restarts: int = 1, loss: str = "ce", eot: int = 1,
        momentum: float | None = None, task: int | None = None, seed: int = 0, score_draws: int = 1,
        train_mode: bool = False, keep_best: bool = False) -> list[torch.Tensor]:
    """Projected gradient ascent on the summed (masked) per-head loss; returns one adversarial tensor per modality.

    ``eps``/``alpha``: one value or one per modality (eps 0 = modality left clean); ``alpha`` defaults to
    2.5 * eps / steps (Madry et al.). ``eot``: gradients averaged over that many forward passes per step (random
    models). ``restarts``: further random starts for the rows whose masked heads are not all fooled yet; each row
    keeps the run that fools most heads in a fresh forward pass (ties: higher loss). ``task``: attack only that
    head (None: all heads summed). ``momentum``: MIM's decay (None: plain sign steps). ``seed``: random starts
    only (the model's own randomness is the model's business). The model runs in eval mode (``train_mode``: in
    train mode, for adversarial training) with its randomness as deployed; its mode is restored afterwards.
    ``keep_best`` (deterministic models): return each row's most successful iterate, not the last one.
    """
    _check(images, labels, masks)
    if steps < 1 or restarts < 1 or eot < 1:
        raise ConfigError(f"steps, restarts and eot must be >= 1 (got {steps}, {restarts}, {eot})")
    clean = [x.detach() for x in images]
    eps_m = per_modality(eps, len(clean))
    alphas = _alphas(alpha, eps_m, steps, 2.5)
    gen = torch.Generator(device=clean[0].device if clean[0].is_cuda else "cpu").manual_seed(int(seed))
    keep_best = keep_best and eot == 1  # with EOT one forward pass is one draw, not a verdict
    with attack_mode(model, train=train_mode):
        best = _one_run(model, clean, labels, masks, eps_m, alphas, steps, random_start, loss, eot, momentum, task, gen,
                        keep_best)
        if restarts == 1:
            return best
        best_score, best_loss = _score(model, best, labels, masks, loss, task, score_draws)
        for _ in range(restarts - 1):
            rows = (best_score > 0).nonzero().flatten()
            if rows.numel() == 0:
                break
            sub = lambda ts: [t[rows] for t in ts]  # noqa: E731
            cand = _one_run(model, sub(clean), sub(labels), None if masks is None else sub(masks), eps_m, alphas,
                            steps, random_start, loss, eot, momentum, task, gen, keep_best)
            score, cur_loss = _score(model, cand, sub(labels), None if masks is None else sub(masks), loss, task,
                                     score_draws)
            better = (score < best_score[rows]) | ((score == best_score[rows]) & (cur_loss > best_loss[rows]))
            take = rows[better]
            for m in range(len(best)):
                best[m][take] = cand[m][better]
            best_score[take], best_loss[take] = score[better], cur_loss[better]
    return best


@torch.no_grad()
def _score(model: nn.Module, adv: Tensors, labels: Tensors, masks: Tensors | None, loss: str, task: int | None,
           draws: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: how many of its counted heads are still right (lower is better for the attacker), and the loss."""
    corr = _counted(expected_correctness(model, adv, labels, draws), masks, task)
    return corr, objective(model(list(adv)), labels, masks, loss=loss, task=task)


def fgsm(model: nn.Module, images: Tensors, labels: Tensors, masks: Tensors | None = None,
         eps: float | Sequence[float] = 8 / 255, *, random_start: bool = False,
         alpha: float | Sequence[float] | None = None,
         loss: str = "ce", eot: int = 1, task: int | None = None, seed: int = 0,
         train_mode: bool = False) -> list[torch.Tensor]:
    """One signed-gradient step of size eps (Goodfellow et al.); with ``random_start`` and alpha = 1.25 eps by
    default it is the FGSM-RS of fast adversarial training (Wong et al. 2020)."""
    eps_m = per_modality(eps, len(images))
    if alpha is None:
        alpha = [(1.25 if random_start else 1.0) * e for e in eps_m]
    return pgd(model, images, labels, masks, eps_m, steps=1, alpha=alpha, random_start=random_start, restarts=1,
               loss=loss, eot=eot, task=task, seed=seed, train_mode=train_mode)


def bim(model: nn.Module, images: Tensors, labels: Tensors, masks: Tensors | None = None,
        eps: float | Sequence[float] = 8 / 255, *, steps: int = 10, alpha: float | Sequence[float] | None = None,
        loss: str = "ce", eot: int = 1, task: int | None = None, keep_best: bool = False) -> list[torch.Tensor]:
    """Basic iterative method (Kurakin et al.): PGD from the clean image, steps of eps / steps by default."""
    eps_m = per_modality(eps, len(images))
    return pgd(model, images, labels, masks, eps_m, steps=steps, alpha=_alphas(alpha, eps_m, steps, 1.0),
               random_start=False, loss=loss, eot=eot, task=task, keep_best=keep_best)


def mim(model: nn.Module, images: Tensors, labels: Tensors, masks: Tensors | None = None,
        eps: float | Sequence[float] = 8 / 255, *, steps: int = 10, alpha: float | Sequence[float] | None = None,
        decay: float = 1.0, loss: str = "ce", eot: int = 1, task: int | None = None,
        keep_best: bool = False) -> list[torch.Tensor]:
    """Momentum iterative method (Dong et al. 2018): BIM with an accumulated, L1-normalised gradient."""
    eps_m = per_modality(eps, len(images))
    return pgd(model, images, labels, masks, eps_m, steps=steps, alpha=_alphas(alpha, eps_m, steps, 1.0),
               random_start=False, momentum=decay, loss=loss, eot=eot, task=task, keep_best=keep_best)
