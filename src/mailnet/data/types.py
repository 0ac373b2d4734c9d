"""The contract between the data layer and everything that reads it (engine, attacks, bench).

A *modality* is one input branch (one image per sample); a *task* is one classification head. In the unpaired
setting (the paper's protocol) task ``m`` belongs to modality ``m``; in the paired setting a task may read all
modalities.

A batch is a plain dict::

    {
      "images": [Tensor(B, C_m, H_m, W_m) float32 in [0, 1]  for each modality m],
      "labels": [Tensor per task t: int64 (B,) for binary / multi-class / ordinal,
                                     float32 (B, K) of 0/1 for multi-label],
      "mask":   [bool Tensor (B,) per task t: does this row count for task t's metrics?],
      "index":  [int64 Tensor (B,) per task t: the row's sample index in task t's split],
    }

``mask`` exists for unpaired evaluation: one pass is as long as the largest test split, every modality's
samples are visited exactly once with ``mask=True`` and the shorter splits are cycled as partners with
``mask=False``. Training batches have every mask True.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

TaskType = Literal["binary", "multi-class", "multi-label", "ordinal"]
TASK_TYPES: tuple[str, ...] = ("binary", "multi-class", "multi-label", "ordinal")


@dataclass(frozen=True)
class TaskSpec:
    """One classification head: what it predicts and how it is scored."""

    name: str
    task_type: TaskType
    num_classes: int
    class_names: tuple[str, ...] = field(default=())
    modality: int | None = None  # unpaired: the modality this task's labels come from

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ModalitySpec:
    """One input branch, as the model sees it (after resizing and channel handling)."""

    name: str
    in_chans: int
    img_size: int

    def to_dict(self) -> dict:
        return asdict(self)
