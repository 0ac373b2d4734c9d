"""Do two independent EOT gradient estimates of a random model agree? (a probe for stochastic-gradient masking)

EOT-PGD steps along the sign of the input gradient averaged over K draws. When the defence's randomness makes
single-draw gradients huge and unrelated from draw to draw, two independent K-draw averages point different ways,
every step is a random walk, and a high robust accuracy measures the estimate's noise, not the model (Athalye et
al. 2018, "stochastic gradients"). Measured at the clean images of the attacked rows, each head on its own rows with
its own loss, every modality perturbed: 2K single-draw gradients per row, split into two disjoint K-draw means.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mailnet.attacks.eot import attack_mode, eot_gradients
from mailnet.attacks.losses import objective
from mailnet.attacks.subset import AttackRows


@dataclass(frozen=True)
class Agreement:
    """Per task, averaged over its rows. ``cos_eot`` is 0 in expectation when the two K-draw means are unrelated;
    ``cos_eot_se`` is its standard error over the groups of rows that had draws of their own, so
    ``cos_eot / cos_eot_se`` says how far from chance it is."""

    task: str
    n: int
    draws: int
    grad_norm: float  # mean L2 norm of a single draw's input gradient (all modalities)
    cos_single: float  # cosine between two single draws' gradients
    cos_eot: float  # cosine between the two K-draw means
    cos_eot_se: float
    sign_eot: float  # share of input entries where the two K-draw means have the same sign (0.5: a coin flip)
    groups: int = 1  # independent sets of draws the standard error is taken over (NaN below MIN_GROUPS)

    def to_dict(self) -> dict:
        return asdict(self)


def _row_stats(first: torch.Tensor, second: torch.Tensor, mean_a: torch.Tensor, mean_b: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row (B,): single-draw cosine, K-draw-mean cosine, sign agreement over the entries either mean moves."""
    cos1 = F.cosine_similarity(first, second, dim=1)
    cosk = F.cosine_similarity(mean_a, mean_b, dim=1)
    moving = (mean_a != 0) | (mean_b != 0)
    same = (torch.sign(mean_a) == torch.sign(mean_b)) & moving
    sign = same.sum(1).double() / moving.sum(1).clamp_min(1).double()
    return cos1.double(), cosk.double(), sign


GROUP = 8  # rows per set of draws: a pass may share its draw across the batch (RPF kernels), so rows of one
# pass are not independent; the standard error is taken over groups with draws of their own
MIN_GROUPS = 4


def group_size(rows: int, batch_size: int) -> int:
    """Rows per independent set of draws: at most ``GROUP`` (and the batch size), small enough for ``MIN_GROUPS``."""
    return max(1, min(GROUP, batch_size, rows // MIN_GROUPS))


def measure(model: nn.Module, rows: AttackRows, draws: int, task_names: Sequence[str], loss: str = "ce",
            batch_size: int = 64) -> list[Agreement]:
    """One :class:`Agreement` per task with counted rows (``2 * draws`` forward and backward passes per row, in
    groups of :func:`group_size` rows, each group with draws of its own)."""
    draws = max(1, int(draws))
    everything = [True] * len(rows.images)
    out = []
    with attack_mode(model):
        for t, name in enumerate(task_names):
            mine = rows.take(rows.masks[t])
            if len(mine) == 0:
                continue
            parts: dict[str, list[torch.Tensor]] = {"cos1": [], "sign": [], "norm": []}
            group_means = []
            for chunk in mine.chunks(group_size(len(mine), batch_size)):
                def head(logits, chunk=chunk):
                    return objective(logits, chunk.labels, chunk.masks, loss=loss, task=t)

                singles, sums, norms = [], [None, None], None
                for d in range(2 * draws):
                    grads, _ = eot_gradients(model, chunk.images, everything, head, draws=1)
                    g = torch.cat([x.flatten(1) for x in grads], dim=1)
                    norm = g.norm(dim=1).double()
                    norms = norm if norms is None else norms + norm
                    if d < 2:
                        singles.append(g)
                    half = d // draws
                    sums[half] = g.clone() if sums[half] is None else sums[half].add_(g)
                cos1, cosk, sign = _row_stats(singles[0], singles[1], sums[0], sums[1])
                for key, v in (("cos1", cos1), ("sign", sign), ("norm", norms / (2 * draws))):
                    parts[key].append(v.cpu())
                group_means.append(float(cosk.mean()))
            v = {k: torch.cat(p) for k, p in parts.items()}
            groups = torch.tensor(group_means, dtype=torch.float64)
            se = (float(groups.std(unbiased=True)) / math.sqrt(len(groups)) if len(groups) >= MIN_GROUPS
                  else float("nan"))
            out.append(Agreement(task=name, n=len(mine), draws=draws, grad_norm=float(v["norm"].mean()),
                                 cos_single=float(v["cos1"].mean()), cos_eot=float(groups.mean()),
                                 cos_eot_se=se, sign_eot=float(v["sign"].mean()), groups=len(groups)))
    return out


def summary(agreements: Sequence[Agreement | dict]) -> str:
    """One log line: per task, the K-draw cosine with its standard error and the sign agreement."""
    rows = [a.to_dict() if isinstance(a, Agreement) else a for a in agreements]
    if not rows:
        return "EOT gradient agreement: no rows"
    return (f"EOT gradient agreement (two independent {rows[0]['draws']}-draw means at the clean images): "
            + "; ".join(f"{r['task']} cosine {r['cos_eot']:.3f} +- {r['cos_eot_se']:.3f}, same sign "
                        f"{r['sign_eot']:.3f}, single draws {r['cos_single']:.3f}" for r in rows))
