"""Class probabilities for new images from a checkpoint alone (no dataset needed).

Unpaired models were trained on pairs of unrelated images, so a prediction for one modality still needs a
partner image in every other branch. A modality the user does not give is filled from the small partner bank
saved in the checkpoint (training images), and the probabilities are averaged over ``k`` partners; the output
says which modalities were filled. Models random at inference are also averaged over ``draws`` draws, seeded
``seed, seed + 1, ...``: the same call gives the same probabilities, and another ``seed`` other draws.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from mailnet.data.types import ModalitySpec, TaskSpec
from mailnet.engine.evaluation import probabilities
from mailnet.engine.randomness import is_stochastic, reseed
from mailnet.engine.runs import load_model
from mailnet.errors import DataError, MailnetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass
class Predictor:
    model: nn.Module
    modalities: list[ModalitySpec]
    tasks: list[TaskSpec]
    paired: bool
    bank: dict[int, torch.Tensor]
    device: torch.device
    stochastic: bool | None = None  # decided on the first prediction, then reused

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> "Predictor":
        model, meta, tensors = load_model(path, device=device)
        if "modalities" not in meta or "tasks" not in meta:
            raise MailnetError(f"{path}: checkpoint lacks modality/task descriptions (use a best checkpoint)")
        try:
            mods = [ModalitySpec(**m) for m in meta["modalities"]]
            tasks = [TaskSpec(**{**t, "class_names": tuple(t.get("class_names") or ())}) for t in meta["tasks"]]
        except (TypeError, KeyError, ValueError, AttributeError) as e:
            raise MailnetError(f"{path}: the checkpoint's modality/task descriptions are malformed "
                               f"({type(e).__name__}: {e})") from None
        bank = {int(k.split(".")[1]): v.float().div(255) for k, v in tensors.items() if k.startswith("partner_bank.")}
        return cls(model, mods, tasks, bool(meta.get("paired")), bank, torch.device(device))

    def modality_index(self, name: str) -> int:
        names = [m.name for m in self.modalities]
        if name not in names:
            raise MailnetError(f"unknown modality {name!r}; this model's modalities are {', '.join(names)}")
        return names.index(name)

    def load_image(self, path: str | Path, modality: int) -> torch.Tensor:
        """Read an image file exactly as training reads one (``read_image`` and ``prepare``: 16-bit and float images
        scaled alike, the same channel conversion and resizing), at the modality's channels and size."""
        from mailnet.data.images import load_image

        spec = self.modalities[modality]
        p = Path(path)
        if not p.is_file():
            raise DataError(f"{p}: image file not found (modality {spec.name})")  # a batch skips it
        return load_image(p, channels=spec.in_chans, size=spec.img_size)[0]

    @torch.no_grad()
    def predict(self, images: dict[int, torch.Tensor], k: int = 8, draws: int = 8, seed: int = 0) -> dict[str, Any]:
        """Probabilities per task for one subject (paired) or one image per given modality (unpaired), with how
        many partner images (``partners``) and draws (``draws``: 1 for a deterministic model) were averaged."""
        if k < 1 or draws < 1:
            raise MailnetError(f"predict: partners (k={k}) and draws ({draws}) must be >= 1")
        missing = [m for m in range(len(self.modalities)) if m not in images]
        if missing and (self.paired or not self.bank):
            names = ", ".join(self.modalities[m].name for m in missing)
            raise MailnetError(f"missing image for modality {names} (this model needs every modality"
                               + (")" if self.paired else "; the checkpoint has no partner bank)"))
        rows = max(1, min(k, min(len(self.bank[m]) for m in missing))) if missing else 1
        batch = []
        for m in range(len(self.modalities)):
            if m in images:
                batch.append(images[m][None].expand(rows, -1, -1, -1))
            else:
                batch.append(self.bank[m][:rows])
        batch = [x.to(self.device) for x in batch]
        if self.stochastic is None:
            self.stochastic = is_stochastic(self.model, batch)
        n_draws = draws if self.stochastic else 1
        acc = [torch.zeros(self.tasks[t].num_classes) for t in range(len(self.tasks))]
        for d in range(n_draws):
            reseed(self.model, seed + d)
            for t, lg in enumerate(self.model(batch)):
                acc[t] += probabilities(lg.float(), self.tasks[t]).mean(0).cpu()
        out: dict[str, Any] = {"filled_from_partner_bank": [self.modalities[m].name for m in missing],
                               "partners": rows if missing else 0, "draws": n_draws, "tasks": {}}
        for t, task in enumerate(self.tasks):
            if not self.paired and task.modality is not None and task.modality in missing:
                continue  # a task of a modality the user did not give would score a bank image
            out["tasks"][task.name] = (acc[t] / n_draws).tolist()
        return out
