"""Square attack (Andriushchenko et al. 2020) through torchattacks, scored on a random model's averaged output.

Why a score-based attack: on full Robust-MAIL two independent 10-draw EOT gradient estimates are uncorrelated
(BENCHMARKS.md, Robustness), so every gradient attack takes random steps, while its *averaged* prediction does depend
on the input. Square needs no gradient: each query proposes a random square of +-2 eps changes inside the L-inf ball
and keeps it where the margin of the true class drops. On a random model every query is scored on the probabilities
averaged over ``draws`` forward passes (log of the mean softmax, the prediction ``mailnet`` reports), so a kept
change lowers the expected margin rather than one draw's. The library stops attacking a row once its score says
"fooled"; on a random model that says only that the averaged prediction flipped, while the suite scores how often
single fresh draws are wrong, so there every row is attacked for all its queries (its true-class score is lifted by
``PUSH`` in the library's eyes, so the library never sees it fooled) and keeps its best point. Deterministic models
get one pass per query and stop as usual, as in AutoAttack's ``standard`` version (of which Square is the last
attack).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from mailnet.attacks.autoattack import FlatView, counted_rows, which_head, with_rows
from mailnet.attacks.eot import attack_mode
from mailnet.attacks.eps import per_modality
from mailnet.attacks.losses import is_multilabel
from mailnet.errors import ConfigError

P_INIT = 0.8  # the library's and the paper's default share of the image the first squares cover
PUSH = 30.0  # > any log-probability margin above the 1e-12 floor (|log 1e-12| = 27.6), far below float32's reach


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
        total = None
        for _ in range(self.draws):
            probs = [out.float().softmax(dim=1) for out in self.model(images)]
            total = probs if total is None else [a + b for a, b in zip(total, probs)]
        return [(p / self.draws).clamp_min(1e-12).log() for p in total]


class PushedView(FlatView):
    """:class:`FlatView` whose true-class output is raised by ``push`` for every row, so a library that stops at the
    first "fooled" score keeps lowering the margin instead (its margin comparisons are unchanged by a constant)."""

    def __init__(self, model: nn.Module, clean: Sequence[torch.Tensor], eps: Sequence[float], task: int,
                 labels: torch.Tensor, push: float):
        super().__init__(model, clean, eps, task)
        self.labels = labels
        self.push = push

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        out = super().forward(flat)
        if not self.push:
            return out
        true = self.labels[self.rows_of(flat)].view(-1, 1)
        return out + self.push * torch.zeros_like(out).scatter_(1, true, 1.0)


def square(model: nn.Module, images: Sequence[torch.Tensor], labels: Sequence[torch.Tensor],
           masks: Sequence[torch.Tensor] | None = None, eps: float | Sequence[float] = 8 / 255, *,
           task: int | None = None, queries: int = 1000, draws: int = 1, seed: int = 0) -> list[torch.Tensor]:
    """Square (L-inf, margin loss) on head ``task`` for the rows counted for that task; returns full-size images
    (rows not counted for the task are returned clean). ``queries``: proposals per row (each costs ``draws``
    forward passes of the rows not yet fooled); ``draws``: passes averaged per score (1 for a deterministic
    model). Per-modality budgets and frozen modalities as in :func:`mailnet.attacks.autoattack.autoattack`."""
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
        view = PushedView(AveragedPrediction(model, draws), [x[rows] for x in images], eps_m, task, y,
                          PUSH if draws > 1 else 0.0).eval()
        attack = torchattacks.Square(view, norm="Linf", eps=view.eps_ref, n_queries=queries, n_restarts=1,
                                     p_init=P_INIT, loss="margin", seed=seed)
        flat = view.encode()
        attack.init_hyperparam(flat)
        torch.manual_seed(seed)  # the library draws its squares from torch's global generator
        # attack_single_run returns every row's best point; the library's perturb() would put back the clean image
        # wherever its own scores never saw the row fooled, which on a random model is most rows
        _, best = attack.attack_single_run(flat, y)
        adv_rows = view.decode(best)
    return with_rows(images, rows, adv_rows)
