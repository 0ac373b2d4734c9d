"""Optimizers and learning-rate schedules from the ``train`` config section (the reference protocol: Adam +
ReduceLROnPlateau; the MedMNIST protocol: Adam + x0.1 at 50% and 75% of the epochs)."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn


def build_optimizer(model: nn.Module, tcfg: dict[str, Any]) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    name, lr, wd = tcfg["optimizer"], float(tcfg["lr"]), float(tcfg["weight_decay"])
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    return torch.optim.SGD(params, lr=lr, momentum=float(tcfg["momentum"]), weight_decay=wd)


def build_scheduler(opt: torch.optim.Optimizer, tcfg: dict[str, Any]):
    kind, epochs, gamma = tcfg["schedule"], int(tcfg["epochs"]), float(tcfg["gamma"])
    if kind == "multistep":
        # a list, not a set: two fractions that round to one epoch (short runs) decay twice there, as asked
        milestones = sorted(max(1, int(round(f * epochs))) for f in tcfg["milestones"])
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=gamma)
    if kind == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=gamma,
                                                          patience=int(tcfg["plateau_patience"]))
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    return None


def step_scheduler(sched, val_loss: float) -> None:
    """Called once per epoch, after validation."""
    if sched is None:
        return
    if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
        sched.step(val_loss)
    else:
        sched.step()
