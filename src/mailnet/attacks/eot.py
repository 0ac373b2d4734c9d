"""Expectation over transformation (EOT) for random defences, and the model state attacks run in.

A random model (random projection filters, attention noise, MC dropout) gives a different function at every
forward pass, so the gradient of one draw says little about the next. EOT (Athalye et al. 2018) follows the
gradient of the *expected* loss, estimated by averaging K independent draws per step; each draw is a separate
forward pass because some defences draw one kernel per pass, shared across the batch (replicating the batch in
one pass would not give independent draws).
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch
import torch.nn as nn

from mailnet.attacks.losses import correctness

Objective = Callable[[list[torch.Tensor]], torch.Tensor]  # logits list -> per-row loss (B,)


@contextlib.contextmanager
def attack_mode(model: nn.Module, train: bool = False) -> Iterator[nn.Module]:
    """Run the attack on the model as it is deployed: ``eval()`` (BatchNorm uses running statistics, nothing is
    updated), or ``train()`` when ``train`` is set (adversarial training). The defence's own randomness is not
    touched: Robust-MAIL and MC dropout keep it on in eval mode by design. Parameters stop requiring gradients
    for the attack (only input gradients are needed; saves the weight backward); everything is restored after."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.train(train)
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def eot_gradients(model: nn.Module, images: Sequence[torch.Tensor], perturbed: Sequence[bool], objective: Objective,
                  draws: int = 1) -> tuple[list[torch.Tensor | None], torch.Tensor]:
    """Gradient of ``objective(model(images)).sum()`` averaged over ``draws`` forward passes, w.r.t. the perturbed
    modalities (None for the others), and the per-row objective averaged over the same draws."""
    xs = [x.detach().requires_grad_(bool(p)) for x, p in zip(images, perturbed)]
    leaves = [x for x, p in zip(xs, perturbed) if p]
    grads: list[torch.Tensor] = [torch.zeros_like(x) for x in leaves]
    loss_sum = None
    for _ in range(max(1, int(draws))):
        with torch.enable_grad():
            per_row = objective(model(xs))
            # a perturbed modality may not reach the objective (one head of a model with one network per task):
            # its gradient is zero, the attack then leaves that image alone
            got = (torch.autograd.grad(per_row.sum(), leaves, allow_unused=True) if per_row.requires_grad
                   else [None] * len(leaves))
        for g, d in zip(grads, got):
            if d is not None:
                g.add_(d)
        loss_sum = per_row.detach() if loss_sum is None else loss_sum + per_row.detach()
    k = float(max(1, int(draws)))
    it = iter(g / k for g in grads)
    return [next(it) if p else None for p in perturbed], loss_sum / k


@torch.no_grad()
def expected_correctness(model: nn.Module, images: Sequence[torch.Tensor], labels: Sequence[torch.Tensor],
                         draws: int = 1) -> torch.Tensor:
    """(T, B) correctness averaged over ``draws`` forward passes (1 for a deterministic model): for a random
    model this is the probability that a fresh draw classifies the row correctly."""
    total = None
    for _ in range(max(1, int(draws))):
        c = correctness(model(list(images)), labels)
        total = c if total is None else total + c
    return total / float(max(1, int(draws)))


@torch.no_grad()
def is_random(model: nn.Module, images: Sequence[torch.Tensor], tries: int = 2, rtol: float = 1e-4,
              atol: float = 1e-5) -> bool:
    """Does the model (in its current mode) give different logits for the same input? Decides whether EOT matters
    and is recorded with the results. Differences within ``rtol``/``atol`` are float noise, not randomness: a GPU
    kernel that sums in a varying order must not turn a deterministic model into a "random" one (which would switch
    off the best-iterate and carry-over bookkeeping and make its robust accuracy come out higher)."""
    xs = [x[:8] for x in images]
    first = model(xs)
    for _ in range(tries):
        again = model(xs)
        if any(not torch.allclose(a, b, rtol=rtol, atol=atol) for a, b in zip(first, again)):
            return True
    return False


class MeanOverDraws(nn.Module):
    """Wraps a random multimodal model so that one call returns the logits averaged over ``draws`` passes: an
    estimate of the expected output, for libraries that take one model and no EOT option."""

    def __init__(self, model: nn.Module, draws: int):
        super().__init__()
        self.model = model
        self.draws = max(1, int(draws))

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        outs = [self.model(xs) for _ in range(self.draws)]
        return [torch.stack(heads).mean(dim=0) for heads in zip(*outs)]
