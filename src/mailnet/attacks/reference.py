"""The reference implementation's evaluation protocol, exactly, so the paper's numbers can be reproduced next to
the honest ones: L-inf PGD, 10 steps of eps/4, no random start, no restarts, no EOT (one draw per step even for a
random model), cross-entropy summed over the heads, every modality perturbed together."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from mailnet.attacks.eps import per_modality
from mailnet.attacks.pgd import pgd

REFERENCE = {"steps": 10, "alpha_ratio": 0.25, "random_start": False, "restarts": 1, "eot": 1, "loss": "ce"}


def reference_attack(model: nn.Module, images: Sequence[torch.Tensor], labels: Sequence[torch.Tensor],
                     masks: Sequence[torch.Tensor] | None = None,
                     eps: float | Sequence[float] = 4 / 255) -> list[torch.Tensor]:
    """The reference protocol (design doc section 4); ``eps`` may be per modality like every attack here."""
    eps_m = per_modality(eps, len(images))
    return pgd(model, images, labels, masks, eps_m, steps=REFERENCE["steps"],
               alpha=[REFERENCE["alpha_ratio"] * e for e in eps_m], random_start=REFERENCE["random_start"],
               restarts=REFERENCE["restarts"], loss=REFERENCE["loss"], eot=REFERENCE["eot"])
