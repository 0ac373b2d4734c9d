"""Attack objectives and per-row correctness for multi-head models, on logits.

The label's form says how a head is scored (the batch contract in ``mailnet.data.types``): an int64 ``(B,)`` label
is a single-label head (binary with 2 logits, multi-class, ordinal) scored by argmax and attacked through softmax
cross-entropy or the DLR margin; a float ``(B, K)`` 0/1 label is a multi-label head scored per label (threshold 0
on the logit) and attacked through per-label BCE or the per-label margin. Masks decide which rows count for which
head: a row whose mask is False for task t adds nothing to task t's loss and is not scored for task t.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from mailnet.errors import ConfigError

LOSSES = ("ce", "dlr")


def is_multilabel(labels: torch.Tensor) -> bool:
    return labels.dim() == 2 and labels.is_floating_point()


def dlr_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-row DLR (Croce & Hein 2020): -(z_y - max_{i!=y} z_i) / (z_pi1 - z_pi3); larger = closer to fooled.

    Scale-invariant, so a head with large logits cannot hide behind a saturated softmax. Two-class heads have no
    third logit to normalise by; they fall back to the plain margin max_{i!=y} z_i - z_y (C&W), whose gradient sign
    per row is the same as DLR's would be.
    """
    z_y = logits.gather(1, labels.view(-1, 1)).squeeze(1)
    others = logits.clone()
    others.scatter_(1, labels.view(-1, 1), float("-inf"))
    margin = others.max(dim=1).values - z_y
    if logits.shape[1] < 3:
        return margin
    top = logits.sort(dim=1, descending=True).values
    return margin / (top[:, 0] - top[:, 2] + 1e-12)


def head_loss(logits: torch.Tensor, labels: torch.Tensor, loss: str = "ce") -> torch.Tensor:
    """Per-row loss of one head (B,); multi-label heads sum over labels."""
    if loss not in LOSSES:
        raise ConfigError(f"unknown attack loss {loss!r}; choose one of {', '.join(LOSSES)}")
    if is_multilabel(labels):
        if loss == "ce":
            return F.binary_cross_entropy_with_logits(logits, labels, reduction="none").sum(dim=1)
        sign = 1.0 - 2.0 * labels  # +z pushes a negative label wrong, -z a positive one
        return (sign * logits).sum(dim=1)
    if loss == "ce":
        return F.cross_entropy(logits, labels, reduction="none")
    return dlr_loss(logits, labels)


def objective(logits: Sequence[torch.Tensor], labels: Sequence[torch.Tensor], masks: Sequence[torch.Tensor] | None,
              loss: str = "ce", task: int | None = None) -> torch.Tensor:
    """Per-row attack objective (B,): the loss summed over heads (or only head ``task``), masked rows excluded."""
    if len(logits) != len(labels):
        raise ConfigError(f"the model returned {len(logits)} heads but the batch has {len(labels)} label tensors")
    total = None
    for t, (z, y) in enumerate(zip(logits, labels)):
        if task is not None and t != task:
            continue
        per_row = head_loss(z, y, loss)
        if masks is not None:
            per_row = per_row * masks[t].to(per_row.dtype)
        total = per_row if total is None else total + per_row
    if total is None:
        raise ConfigError(f"task {task} does not exist (the model has {len(logits)} heads)")
    return total


def head_correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-row correctness in [0, 1] (B,): argmax == label, or for multi-label the fraction of labels right
    (the per-label mean, as ``mailnet.engine.metrics.accuracy`` scores multi-label tasks)."""
    if is_multilabel(labels):
        return ((logits > 0).to(labels.dtype) == labels).float().mean(dim=1)
    return (logits.argmax(dim=1) == labels).float()


def correctness(logits: Sequence[torch.Tensor], labels: Sequence[torch.Tensor]) -> torch.Tensor:
    """(T, B) correctness of every head on every row (masks are applied by the caller when averaging)."""
    return torch.stack([head_correct(z.detach(), y) for z, y in zip(logits, labels)])
