"""AutoAttack (Croce & Hein 2020) through torchattacks, for multimodal multi-head models.

torchattacks expects ``model(one_tensor) -> one_logits`` and labels ``(N,)``. ``FlatView`` presents that: the
perturbed modalities are stacked along the channels into one ``(N, C, H, W)`` image when they share their height
and width, else flattened into one ``(N, D, 1, 1)`` tensor, and split again inside, for one task head at a time.
The image layout matters for AutoAttack ``standard``'s Square attack, which perturbs square windows: on a 1 x 1
"image" its window is the whole input and it degenerates into a random sign search. Three details make the
translation exact:

* per-modality budgets: the library has one eps, so modality m's pixels are stored scaled by
  r_m = eps_ref / eps_m (eps_ref the smallest budget) and divided back inside; a library step of eps_ref is a
  step of eps_m in that modality's pixels (clamped to [0, 1] when decoding, with the gradient passed through the
  clamp so that a pixel pushed past 1 by a scaled step can come back);
* rows: the library calls the model on subsets of rows, but modalities left clean (``each`` threat) are per row,
  so each row also carries its index in binary, one coordinate (in the image layout: one constant channel) per bit
  in {0, 1}; a perturbation below 0.5 cannot flip a rounded bit and the bits get no gradient (so eps_ref must stay
  below 0.5);
* heads with fewer than 4 logits (binary tasks): DLR needs 3 logits and the targeted DLR 4, so the view pads the
  logits with columns 10^4 below the smallest logit. Argmax and cross-entropy are unchanged; DLR on a padded
  binary head reduces to the plain logit margin (scaled), whose sign of gradient is the same.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from mailnet.attacks.eot import attack_mode
from mailnet.attacks.eps import per_modality
from mailnet.attacks.losses import is_multilabel
from mailnet.errors import ConfigError

VERSIONS = ("rand", "standard")
PAD_GAP = 1e4
MIN_LOGITS = 4


class FlatView(nn.Module):
    """``model(list_of_images) -> list_of_logits`` seen as ``view(flat) -> logits of head `task```."""

    def __init__(self, model: nn.Module, clean: Sequence[torch.Tensor], eps: Sequence[float], task: int):
        super().__init__()
        self.model = model
        self.clean = [x.detach() for x in clean]
        self.eps = list(eps)
        self.task = task
        self.perturbed = [m for m, e in enumerate(self.eps) if e > 0]
        if not self.perturbed:
            raise ConfigError("AutoAttack needs at least one modality with a positive budget")
        self.eps_ref = min(self.eps[m] for m in self.perturbed)
        if self.eps_ref >= 0.5:
            raise ConfigError(f"AutoAttack wrapper: budget {self.eps_ref:.3f} >= 0.5 is not supported")
        self.ratio = {m: self.eps_ref / self.eps[m] for m in self.perturbed}
        self.n_bits = max(1, math.ceil(math.log2(self.clean[0].shape[0] + 1)))
        spatial = {tuple(self.clean[m].shape[2:]) for m in self.perturbed}
        self.image = len(spatial) == 1 and all(self.clean[m].dim() == 4 for m in self.perturbed)
        # per perturbed modality, how many of the library tensor's channels (image) or coordinates (flat) it holds
        self.sizes = [self.clean[m].shape[1] if self.image else self.clean[m][0].numel() for m in self.perturbed]

    def encode(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The clean rows (all by default) as the library's tensor in [0, 1]: ``(N, C + bits, H, W)`` in the image
        layout, else ``(N, D + bits, 1, 1)``."""
        n = self.clean[0].shape[0]
        rows = torch.arange(n, device=self.clean[0].device) if rows is None else rows
        parts = [self.clean[m][rows] * self.ratio[m] for m in self.perturbed]
        bits = ((rows.view(-1, 1) >> torch.arange(self.n_bits, device=rows.device)) & 1).to(parts[0].dtype)
        if self.image:
            return torch.cat(parts + [bits[:, :, None, None].expand(-1, -1, *parts[0].shape[2:])], dim=1)
        return torch.cat([p.flatten(1) for p in parts] + [bits], dim=1)[:, :, None, None]

    def rows_of(self, flat: torch.Tensor) -> torch.Tensor:
        """Which of the clean rows each row of a library tensor is (read from its index bits)."""
        weights = 2 ** torch.arange(self.n_bits, device=flat.device)
        bits = flat[:, -self.n_bits:, 0, 0] if self.image else flat.flatten(1)[:, -self.n_bits:]
        return (bits.round().long() * weights).sum(dim=1)

    def decode(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Library tensor -> full list of modality tensors for the rows it holds."""
        rows = self.rows_of(flat)
        if not self.image:
            flat = flat.flatten(1)
        images = [x[rows] for x in self.clean]
        offset = 0
        for m, size in zip(self.perturbed, self.sizes):
            piece = flat[:, offset:offset + size] / self.ratio[m]
            # The library keeps its tensor in [0, 1], but a modality stored at ratio r < 1 may go past r (a pixel
            # above 1). A plain clamp would give such a pixel no gradient, so it could never be moved back: the
            # value is clamped, the gradient passed as if the pixel sat on the bound (as it does for r = 1).
            piece = piece + (piece.clamp(0.0, 1.0) - piece).detach()
            images[m] = piece.reshape(-1, *self.clean[m].shape[1:])
            offset += size
        return images

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        logits = self.model(self.decode(flat))[self.task]
        k = logits.shape[1]
        if k >= MIN_LOGITS:
            return logits
        floor = logits.min(dim=1, keepdim=True).values.detach()
        pads = [floor - PAD_GAP * (i + 1) for i in range(MIN_LOGITS - k)]
        return torch.cat([logits] + pads, dim=1)


def _build(view: FlatView, eps: float, n_classes: int, version: str, steps: int, eot: int, seed: int):
    import torchattacks

    aa = torchattacks.AutoAttack(view, norm="Linf", eps=eps, version=version, n_classes=n_classes, seed=seed)
    for sub in aa._autoattack.attacks:  # torchattacks leaves APGD at 10 iterations; the original AutoAttack uses 100
        if hasattr(sub, "steps"):
            sub.steps = steps
        if version == "rand" and hasattr(sub, "eot_iter"):
            sub.eot_iter = eot
    return aa


def _rand_for_random_model(model: nn.Module, view: FlatView, flat: torch.Tensor, labels: Sequence[torch.Tensor],
                           task: int, steps: int, eot: int, seed: int) -> torch.Tensor:
    """AutoAttack-rand on a model that is random at inference: APGD-CE and APGD-DLR with EOT, each returning its
    highest-loss iterate for *every* row, then per row the candidate that fools more often over ``eot`` draws.

    Why not the library's AutoAttack: it keeps an APGD result only for rows its own single draw saw fooled and
    returns the clean image for the rest (and skips rows one clean draw got wrong), so after scoring on a fresh
    draw most rows are scored at their clean image: AutoAttack-rand came out far weaker than EOT-PGD."""
    import torchattacks

    from mailnet.attacks.eot import expected_correctness

    best_flat, best_corr = None, None
    for loss in ("ce", "dlr"):
        apgd = torchattacks.APGD(view, norm="Linf", eps=view.eps_ref, steps=steps, n_restarts=1, seed=seed,
                                 loss=loss, eot_iter=eot)
        torch.manual_seed(seed)  # APGD's random start draws from torch's global generator
        _, cand = apgd.perturb(flat, labels[task], best_loss=True)
        with torch.no_grad():
            corr = expected_correctness(model, view.decode(cand), labels, eot)[task]
        if best_flat is None:
            best_flat, best_corr = cand.detach().clone(), corr
        else:
            better = corr < best_corr
            best_flat[better] = cand[better].detach()
            best_corr = torch.minimum(best_corr, corr)
    return best_flat


def which_head(task: int | None, heads: int, attack: str = "autoattack") -> int:
    """``task`` checked against the number of heads (label tensors); ``None`` is head 0 of a one-head model."""
    if task is None:
        if heads != 1:
            raise ConfigError(f"{attack}: {heads} heads (one label tensor each); pass task=0..{heads - 1}: "
                              f"{attack} attacks one head at a time")
        return 0
    if isinstance(task, bool) or not isinstance(task, int) or not 0 <= task < heads:
        raise ConfigError(f"{attack}: task={task!r} is not a head of this model (0..{heads - 1})")
    return task


def counted_rows(images: Sequence[torch.Tensor], masks: Sequence[torch.Tensor] | None, task: int) -> torch.Tensor:
    """Indices of the rows head ``task`` counts (all rows without masks): the ones a one-head attack works on."""
    rows = torch.arange(images[0].shape[0], device=images[0].device)
    return rows if masks is None else rows[masks[task].to(rows.device)]


def with_rows(images: Sequence[torch.Tensor], rows: torch.Tensor,
              attacked: Sequence[torch.Tensor] | None) -> list[torch.Tensor]:
    """Copies of ``images`` with ``rows`` replaced by ``attacked`` (one tensor per modality; None: all clean)."""
    out = [x.detach().clone() for x in images]
    if attacked is not None:
        for m in range(len(out)):
            out[m][rows] = attacked[m].detach()
    return out


def autoattack(model: nn.Module, images: Sequence[torch.Tensor], labels: Sequence[torch.Tensor],
               masks: Sequence[torch.Tensor] | None = None, eps: float | Sequence[float] = 8 / 255, *,
               task: int | None = None, version: str = "rand", steps: int = 100, eot: int = 20,
               seed: int = 0, random_model: bool = False) -> list[torch.Tensor]:
    """AutoAttack on head ``task`` for the rows counted for that task; returns full-size adversarial images (rows
    not counted for the task are returned clean). ``task`` may be left out for a model with one head; with several
    it is required, because AutoAttack scores one head at a time (there is no summed version of it).
    ``version='rand'`` is APGD-CE + APGD-DLR with ``eot`` draws per step (for random defences); ``'standard'`` is APGD-CE, APGD-T, FAB-T and Square (deterministic models).
    ``random_model``: the model is random at inference, so no single forward pass decides whether a row is
    fooled; every row then gets an attacked image (see :func:`_rand_for_random_model`)."""
    task = which_head(task, len(labels))
    if version not in VERSIONS:
        raise ConfigError(f"unknown AutoAttack version {version!r}; choose one of {', '.join(VERSIONS)}")
    if is_multilabel(labels[task]):
        raise ConfigError(f"task {task} is multi-label; AutoAttack scores single-label heads only")
    if random_model and version == "standard":
        raise ConfigError("AutoAttack 'standard' judges each row by one forward pass, which on a model random at "
                          "inference returns the clean image wherever that draw looked robust; use --aa-version rand")
    eps_m = per_modality(eps, len(images))
    rows = counted_rows(images, masks, task)
    if rows.numel() == 0:
        return with_rows(images, rows, None)
    with attack_mode(model):
        # eval(): torchattacks restores the mode the view had when called, and a fresh module is in train mode,
        # which would put the model into train mode for anything that ran after the library returned
        view = FlatView(model, [x[rows] for x in images], eps_m, task).eval()
        if random_model and version == "rand":
            flat_adv = _rand_for_random_model(model, view, view.encode(), [y[rows] for y in labels], task, steps,
                                              eot, seed)
        else:
            with torch.no_grad():
                n_classes = int(model([x[rows[:1]] for x in images])[task].shape[1])
            aa = _build(view, view.eps_ref, n_classes, version, steps, eot, seed)
            flat_adv = aa(view.encode(), labels[task][rows])
        adv_rows = view.decode(flat_adv)
    return with_rows(images, rows, adv_rows)
