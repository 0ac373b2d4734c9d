"""Square attack (Andriushchenko et al. 2020) through torchattacks, scored on a random model's averaged output.

Why a score-based attack: on full Robust-MAIL two independent 10-draw EOT gradient estimates are uncorrelated
(BENCHMARKS.md, Robustness), so every gradient attack takes random steps, while its *averaged* prediction does depend
on the input. Square needs no gradient: each query proposes a random square of +-2 eps changes inside the L-inf ball
and keeps it where the margin of the true class drops. On a random model every query is scored on the probabilities
averaged over ``draws`` forward passes (log of the mean softmax, the prediction ``mailnet`` reports), so a kept
change lowers the expected margin rather than one draw's. The library stops attacking a row once its score says
"fooled"; on a random model that says only that the (averaged) prediction flipped once, while the suite scores how
often single fresh draws are wrong, so there every row is attacked for all its queries and keeps its best point.
Noisy scores have a cost the library does not correct: the best score kept for a row is the minimum of noisy
estimates, so after a lucky one few proposals beat it and the row stalls; more draws per query make that rarer.
Deterministic models get one pass per query and stop as usual, as in AutoAttack's ``standard`` version (of which
Square is the last attack).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import torch
import torch.nn as nn

from mailnet.attacks.autoattack import FlatView, counted_rows, which_head, with_rows
from mailnet.attacks.eot import attack_mode
from mailnet.attacks.eps import per_modality
from mailnet.attacks.losses import is_multilabel
from mailnet.errors import ConfigError

P_INIT = 0.8  # the library's and the paper's default share of the image the first squares cover


class AveragedPrediction(nn.Module):
    """``model(images)`` with each head's output replaced by the log of its softmax averaged over ``draws`` forward
    passes: the same argmax as the averaged prediction, and a margin that moves only where the expectation moves."""

    def __init__(self, model: nn.Module, draws: int):
        super().__init__()
        self.model = model
        self.draws = max(1, int(draws))

    def forward(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.draws == 1:
            return self.model(images)
        passes = [[out.float().log_softmax(dim=1) for out in self.model(images)] for _ in range(self.draws)]
        # log of the mean probability, computed in log space: no floor, so a confident row still has a margin
        # that moves (a floored probability would make every proposal on it look equally good, i.e. no move)
        return [torch.logsumexp(torch.stack(head), dim=0) - math.log(self.draws) for head in zip(*passes)]


@lru_cache(maxsize=1)
def _unstoppable_square() -> type:
    """torchattacks' Square, except that no row is ever reported fooled: its loss (the true class's margin) is kept
    and compared as before, but the loop attacks every row for all its queries (random models; module docstring)."""
    import torchattacks

    class UnstoppableSquare(torchattacks.Square):
        def margin_and_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            _, loss = super().margin_and_loss(x, y)
            return torch.ones_like(loss), loss

    return UnstoppableSquare


def square(model: nn.Module, images: Sequence[torch.Tensor], labels: Sequence[torch.Tensor],
           masks: Sequence[torch.Tensor] | None = None, eps: float | Sequence[float] = 8 / 255, *,
           task: int | None = None, queries: int = 1000, draws: int = 1, seed: int = 0,
           random_model: bool = False) -> list[torch.Tensor]:
    """Square (L-inf, margin loss) on head ``task`` for the rows counted for that task; returns full-size images
    (rows not counted for the task are returned clean). ``queries``: proposals per row (each costs ``draws``
    forward passes of the rows not yet fooled); ``draws``: passes averaged per score (1 for a deterministic
    model); ``random_model``: attack every row for all its queries instead of stopping where a score says
    "fooled". Per-modality budgets and frozen modalities as in :func:`mailnet.attacks.autoattack.autoattack`."""
    import torchattacks

    task = which_head(task, len(labels), "square")
    if is_multilabel(labels[task]):
        raise ConfigError(f"task {task} is multi-label; the square attack scores single-label heads only")
    if queries < 1 or draws < 1:
        raise ConfigError(f"square attack: queries and draws must be >= 1, got {queries} and {draws}")
    eps_m = per_modality(eps, len(images))
    rows = counted_rows(images, masks, task)
    if rows.numel() == 0:
        return with_rows(images, rows, None)
    with attack_mode(model):
        y = labels[task][rows]
        view = FlatView(AveragedPrediction(model, draws), [x[rows] for x in images], eps_m, task).eval()
        kind = _unstoppable_square() if random_model else torchattacks.Square
        attack = kind(view, norm="Linf", eps=view.eps_ref, n_queries=queries, n_restarts=1, p_init=P_INIT,
                      loss="margin", seed=seed)
        flat = view.encode()
        attack.init_hyperparam(flat)
        torch.manual_seed(seed)  # the library draws its squares from torch's global generator
        # attack_single_run returns every row's best point; the library's perturb() would put back the clean image
        # wherever its own scores never saw the row fooled, which on a random model is most rows
        _, best = attack.attack_single_run(flat, y)
        adv_rows = view.decode(best)
    return with_rows(images, rows, adv_rows)
