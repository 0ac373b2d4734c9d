"""The robustness suite: attacks x budgets x threat variants -> clean and robust accuracy per task.

Every number comes with the settings that produced it (a flat record per attack, budget, perturbed modality and
task), so tables, plots and the sanity checks all read the same list of records.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn as nn

from mailnet.attacks.autoattack import autoattack
from mailnet.attacks.eot import attack_mode, expected_correctness, is_random
from mailnet.attacks.gradient_agreement import measure as measure_agreement
from mailnet.attacks.gradient_agreement import summary as agreement_summary
from mailnet.attacks.eps import eps_to_255
from mailnet.attacks.losses import is_multilabel
from mailnet.attacks.pgd import bim, fgsm, mim, pgd
from mailnet.attacks.reference import REFERENCE, reference_attack
from mailnet.attacks.square import square
from mailnet.attacks.subset import AttackRows
from mailnet.attacks.transfer import EXPECTED_DRAW, FROZEN_DRAW, ExpectedDraw, FrozenDraw
from mailnet.engine.randomness import reseed
from mailnet.errors import ConfigError

ATTACKS = ("pgd", "autoattack", "reference", "fgsm", "bim", "mim", "transfer", "square")
GRADIENT_ATTACKS = ("pgd", "transfer", "fgsm", "bim", "mim")  # the ones settings.objective applies to
OBJECTIVES = ("per-task", "summed")
THREATS = ("joint", "each")
LARGE_EPS = 64 / 255  # sanity probe: any model should be near 0 here
# Each link of a carried-over chain stores its rows' correctness under this key, so that a resumed run continues
# the chain from a stored link instead of attacking every budget again (JSON only; the CSV leaves it out).
ROWS_KEY = "rows_correct"
# The large-budget probe takes 20 steps of 4/255 (alpha = 1.25 * eps / steps). Measured on a trained MAIL: 10 steps
# of 16/255 (the main attacks' 2.5 * eps / steps) overshoot and left breast accuracy at 0.67, while 20 steps of
# 2-8/255 reached 0.04; a probe that is too weak would flag a sound model as gradient-masked.
LARGE_EPS_STEPS, LARGE_EPS_ALPHA_RATIO = 20, 1.25


@dataclass
class SuiteSettings:
    """Everything that decides the numbers; recorded with the results."""

    steps: int = 50
    restarts: int = 2
    eot: int = 20  # draws per step for random models (deterministic models always get 1)
    loss: str = "ce"
    # per-task: every head attacked on its own rows with its own loss, so a head already fooled cannot drown the
    # others' gradients in a summed loss; summed: one attack on the loss summed over heads (the reference's way)
    objective: str = "per-task"
    alpha_ratio: float = 2.5  # PGD step = alpha_ratio * eps / steps
    aa_version: str = "rand"  # APGD-CE + APGD-DLR (with EOT for random models); 'standard' is very slow on CPU
    aa_steps: int = 100
    # square (score-based, no gradient): proposals per row, each scored on the output averaged over the EOT draws
    square_queries: int = 1000
    eval_draws: int = 1  # forward passes averaged when scoring a (random) model
    seed: int = 0
    batch_size: int = 128
    eps_ratio: list[float] | None = None  # per-modality budget multipliers (None: same eps everywhere)
    sanity: bool = True
    # deterministic models: attack only rows still robust (clean-correct, not broken at a smaller budget), budgets
    # in increasing order; robust accuracy is then the worst case over all budgets <= eps, as in AutoAttack
    carry_over: bool = True
    # transfer attack: what the adversarial images were crafted on (a run directory, or one of the target's own
    # deterministic surrogates: FROZEN_DRAW or EXPECTED_DRAW)
    transfer_source: str = FROZEN_DRAW

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SuiteResult:
    records: list[dict] = field(default_factory=list)
    clean: list[dict] = field(default_factory=list)
    random_model: bool = False
    interrupted: bool = False  # stopped by Ctrl-C / SIGTERM: ``records`` holds the budgets that finished
    reused: int = 0  # units taken over from ``done`` (a resumed run) instead of run again
    # random models with the sanity probes on: do two independent EOT gradient estimates agree? (one dict per task)
    gradient_agreement: list[dict] = field(default_factory=list)


def threat_variants(threat: str, n_modalities: int, names: Sequence[str]) -> list[tuple[str, list[float]]]:
    """(label, per-modality multiplier) pairs: ``joint`` -> all ones; ``each`` -> one modality at a time."""
    if threat == "joint":
        return [("all", [1.0] * n_modalities)]
    if threat == "each":
        return [(names[m], [1.0 if j == m else 0.0 for j in range(n_modalities)]) for m in range(n_modalities)]
    raise ConfigError(f"unknown threat model {threat!r}; choose one of {', '.join(THREATS)}")


def attack_info(name: str, settings: SuiteSettings, eot: int, steps: int | None = None,
                restarts: int | None = None, alpha_ratio: float | None = None) -> dict:
    """The settings one attack runs with, as recorded next to its numbers (``steps``, ``restarts`` and PGD's
    ``alpha_ratio`` override the suite's settings, e.g. for the sanity probes)."""
    steps = settings.steps if steps is None else steps
    restarts = settings.restarts if restarts is None else restarts
    ratio = settings.alpha_ratio if alpha_ratio is None else alpha_ratio
    if name == "pgd":
        return {"steps": steps, "restarts": restarts, "eot": eot, "loss": settings.loss,
                "alpha_ratio": ratio, "random_start": True}
    if name == "transfer":
        return {"steps": steps, "restarts": restarts, "eot": 1, "loss": settings.loss,
                "alpha_ratio": ratio, "random_start": True, "source": settings.transfer_source}
    if name == "reference":
        return {"steps": REFERENCE["steps"], "restarts": 1, "eot": 1, "loss": "ce",
                "alpha_ratio": REFERENCE["alpha_ratio"] * REFERENCE["steps"], "random_start": False}
    if name == "fgsm":
        return {"steps": 1, "restarts": 1, "eot": eot, "loss": settings.loss, "alpha_ratio": 1.0,
                "random_start": False}
    if name == "bim":
        return {"steps": steps, "restarts": 1, "eot": eot, "loss": settings.loss, "alpha_ratio": 1.0,
                "random_start": False}
    if name == "mim":
        return {"steps": steps, "restarts": 1, "eot": eot, "loss": settings.loss, "alpha_ratio": 1.0,
                "random_start": False, "momentum": 1.0}
    if name == "autoattack":
        return {"steps": settings.aa_steps, "restarts": 1, "eot": eot if settings.aa_version == "rand" else 1,
                "loss": "ce+dlr" if settings.aa_version == "rand" else "ce+dlr-t+fab-t+square",
                "version": settings.aa_version, "random_start": True}
    if name == "square":
        return {"steps": settings.square_queries, "restarts": 1, "eot": eot, "loss": "margin", "random_start": True}
    raise ConfigError(f"unknown attack {name!r}; choose from {', '.join(ATTACKS)}")


def _keeps_best(name: str, random_model: bool) -> bool:
    """Whether an attack returns each row's most successful iterate: the iterative attacks on a deterministic
    target; on a random model one forward pass is not a verdict. Never the transfer attack: its first iterate that
    fools the source barely crosses the source's boundary and transfers badly, so it hands over the last one, which
    uses the whole budget."""
    return name in ("pgd", "bim", "mim") and not random_model


def _recorded(name: str, info: dict, settings: SuiteSettings, random_model: bool) -> dict:
    """``attack_info`` plus how the gradient attacks were scored: objective, and best iterate or last."""
    if name in GRADIENT_ATTACKS:
        return {**info, "objective": settings.objective,
                "iterate": "best" if _keeps_best(name, random_model) else "last"}
    if name == "reference":  # the published protocol: the heads' summed loss, the last iterate
        return {**info, "objective": "summed", "iterate": "last"}
    return info


def transfer_surrogate(model: nn.Module, source: nn.Module | None, settings: SuiteSettings) -> nn.Module:
    """The deterministic model the transfer attack runs PGD on: ``source`` (another run) with a frozen draw, or the
    target's own frozen draw, or the target at its random variables' expected values."""
    if source is None and settings.transfer_source == EXPECTED_DRAW:
        return ExpectedDraw(model)
    return FrozenDraw(model if source is None else source, settings.seed)


def _gradient_attack(name: str, model: nn.Module, x: list, y: list, m: list | None, eps: list[float],
                     settings: SuiteSettings, info: dict, eot: int, task: int | None, random_model: bool,
                     source: nn.Module | None) -> list[torch.Tensor]:
    steps, restarts = info["steps"], info["restarts"]
    keep_best = _keeps_best(name, random_model)
    if name in ("pgd", "transfer"):  # transfer: PGD on the source (no EOT: every source here is deterministic)
        target = model if name == "pgd" else transfer_surrogate(model, source, settings)
        alpha = [info["alpha_ratio"] * e / steps for e in eps]
        # restarts on a random model: which rows still resist, and which run wins, judged over the EOT draws
        return pgd(target, x, y, m, eps, steps=steps, alpha=alpha, random_start=True, restarts=restarts,
                   loss=settings.loss, eot=info["eot"], seed=settings.seed, task=task, keep_best=keep_best,
                   score_draws=info["eot"])
    if name == "fgsm":
        return fgsm(model, x, y, m, eps, loss=settings.loss, eot=eot, task=task)
    if name == "bim":
        return bim(model, x, y, m, eps, steps=steps, loss=settings.loss, eot=eot, task=task, keep_best=keep_best)
    return mim(model, x, y, m, eps, steps=steps, loss=settings.loss, eot=eot, task=task, keep_best=keep_best)


def run_attack(name: str, model: nn.Module, rows: AttackRows, eps: list[float], settings: SuiteSettings, eot: int,
               steps: int | None = None, restarts: int | None = None, alpha_ratio: float | None = None,
               source: nn.Module | None = None, random_model: bool = True) -> tuple[list[list[torch.Tensor]], dict]:
    """One attack on one chunk: adversarial images per task and the attack's settings.

    The gradient attacks attack each head on its own rows (``settings.objective='per-task'``) or all heads at once
    through the summed loss ('summed', and always the reference protocol); AutoAttack and Square attack one head at a
    time and give None (a NaN accuracy) for multi-label heads. Iterative attacks on deterministic models
    (``random_model=False``) keep each row's most successful iterate. ``source``: the transfer attack's model
    (default: the target with one draw of its randomness frozen)."""
    info = attack_info(name, settings, eot, steps, restarts, alpha_ratio)
    x, y, m = rows.images, rows.labels, rows.masks
    if name == "reference":
        return [reference_attack(model, x, y, m, eps)] * len(y), info
    if name in ("autoattack", "square"):
        per_task: list = []
        for t in range(len(y)):
            if is_multilabel(y[t]):  # both score single-label heads only: no number rather than a wrong one
                per_task.append(None)
            elif name == "autoattack":
                per_task.append(autoattack(model, x, y, m, eps, task=t, version=settings.aa_version,
                                           steps=settings.aa_steps, eot=eot, seed=settings.seed,
                                           random_model=random_model))
            else:
                per_task.append(square(model, x, y, m, eps, task=t, queries=settings.square_queries, draws=eot,
                                       seed=settings.seed, random_model=random_model))
        return per_task, info
    if settings.objective == "summed" or len(y) == 1:
        adv = _gradient_attack(name, model, x, y, m, eps, settings, info, eot, None, random_model, source)
        return [adv] * len(y), info
    out = []
    for t in range(len(y)):  # each head on the rows it counts for; the other rows keep their clean images
        rows_t = torch.nonzero(m[t]).flatten()
        full = [xi.clone() for xi in x]
        if rows_t.numel():
            sub = lambda ts: [ti[rows_t] for ti in ts]  # noqa: E731
            adv = _gradient_attack(name, model, sub(x), sub(y), sub(m), eps, settings, info, eot, t, random_model,
                                   source)
            for k in range(len(full)):
                full[k][rows_t] = adv[k]
        out.append(full)
    return out, info


def _correctness(model: nn.Module, per_task_images: list, rows: AttackRows, draws: int) -> list[torch.Tensor]:
    """Per task, each row's correctness (a fresh draw scores each row; NaN for a task the attack gave no images)."""
    out = []
    with attack_mode(model):
        for t, images in enumerate(per_task_images):
            if images is None:
                out.append(torch.full((len(rows),), float("nan")))
                continue
            out.append(expected_correctness(model, images, rows.labels, draws)[t].float().cpu())
    return out


def _mean_counted(correct: list[torch.Tensor], rows: AttackRows) -> list[float]:
    # correctness is kept on the CPU (bookkeeping), the rows' masks live with the images (maybe on a GPU)
    return [float((c * m.to(c.device, c.dtype)).sum()) / max(1, int(m.sum())) for c, m in zip(correct, rows.masks)]


def _balanced_counted(correct: list[torch.Tensor], rows: AttackRows) -> list[float | None]:
    """Per task, the counted rows' balanced accuracy: the mean over the classes present of each class's mean
    correctness (None for a multi-label task). A model that answers one class everywhere keeps the majority class's
    share as its accuracy under any attack, but its balanced accuracy is 1/k: robustness and class balance read
    apart. Not sklearn's ``balanced_accuracy_score`` (which ``engine.metrics`` uses on predictions): a random
    model's correctness here is a fraction of draws, not one predicted class."""
    out = []
    for c, m, y in zip(correct, rows.masks, rows.labels):
        y, keep = y.cpu(), m.cpu().bool()
        if is_multilabel(y) or not keep.any():
            out.append(None)
            continue
        cls, cc = y[keep], c[keep]
        out.append(sum(float(cc[cls == k].mean()) for k in torch.unique(cls)) / len(torch.unique(cls)))
    return out


def class_shares(rows: AttackRows) -> list[dict]:
    """Per task, the number of classes among the counted rows and the most frequent one's share (what answering it
    everywhere scores): the floor a robust accuracy is read against (empty for a multi-label task)."""
    out = []
    for m, y in zip(rows.masks, rows.labels):
        y = y.cpu()[m.cpu().bool()]
        if is_multilabel(y) or len(y) == 0:
            out.append({})
            continue
        counts = torch.unique(y, return_counts=True)[1]
        out.append({"classes": int(len(counts)), "majority_acc": float(counts.max()) / len(y)})
    return out


def clean_correctness(model: nn.Module, rows: AttackRows, settings: SuiteSettings) -> list[torch.Tensor]:
    parts = [_correctness(model, [chunk.images] * len(chunk.labels), chunk, settings.eval_draws)
             for chunk in rows.chunks(settings.batch_size)]
    return [torch.cat(col) for col in zip(*parts)]


def attack_correctness(name: str, model: nn.Module, rows: AttackRows, eps: list[float], settings: SuiteSettings,
                       eot: int, robust: list[torch.Tensor] | None = None, source: nn.Module | None = None,
                       progress: str | None = None, random_model: bool = True,
                       **overrides) -> tuple[list[torch.Tensor], dict, float]:
    """Per task, each row's correctness under one attack at one per-modality budget, chunk by chunk.

    ``robust`` (deterministic models only): per task, the rows still robust so far (clean-correct, and not broken
    at a smaller budget of the same attack). A row no counted task is robust on is not attacked (it scores 0),
    and a row's score is ANDed with it: an adversarial image found within a smaller ball lies within every
    larger one, so robust accuracy is the worst case over everything tried, as AutoAttack reports it. The
    attack itself sees only the heads still robust on each row (their masks ANDed with ``robust``).
    ``progress``: a label for a progress bar over the chunks (on a CPU one budget can take half an hour)."""
    n_tasks = len(rows.labels)
    correct = [torch.zeros(len(rows)) for _ in range(n_tasks)]
    if robust is None:
        todo = torch.arange(len(rows))
    else:
        alive = torch.zeros(len(rows), dtype=torch.bool)
        for r, m in zip(robust, rows.masks):
            alive |= (r > 0) & m.cpu()
        todo = torch.nonzero(alive).flatten()
    info = attack_info(name, settings, eot, **overrides)  # what run_attack below applies, for the record
    info = _recorded(name, info, settings, random_model)
    start = time.perf_counter()
    subset = rows.take(todo)
    if robust is not None:  # nothing left to gain on a head already broken (or wrong) on that row
        subset = AttackRows(subset.images, subset.labels,
                            [m & (r[todo] > 0).to(m.device) for m, r in zip(subset.masks, robust)], subset.index)
    starts = range(0, len(subset), settings.batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=progress, unit="chunk", leave=False, dynamic_ncols=True)
    for lo in starts:
        chunk = subset.take(slice(lo, lo + settings.batch_size))
        adv, _ = run_attack(name, model, chunk, eps, settings, eot, source=source, random_model=random_model,
                            **overrides)
        for t, c in enumerate(_correctness(model, adv, chunk, settings.eval_draws)):
            correct[t][todo[lo:lo + len(chunk)]] = c
    if robust is not None:
        correct = [torch.minimum(c, r) for c, r in zip(correct, robust)]  # multi-label rows score fractions
    return correct, {**info, "attacked_rows": int(len(todo))}, time.perf_counter() - start


def unit_id(attack: str, role: str, perturbed: str, eps: float, overrides: dict) -> str:
    """Names one attack run of the suite (attack, role, perturbed modalities, budget, per-run overrides): the
    unit that is seeded on its own, recorded, and skipped when a resumed suite already has it."""
    extra = ",".join(f"{k}={overrides[k]!r}" for k in sorted(overrides))
    return f"{attack}|{role}|{perturbed}|{float(eps)!r}|{extra}"


def unit_seed(seed: int, unit: str) -> int:
    """Each unit's own seed: its random starts and draws do not depend on which units ran before it, so a suite
    resumed in another sitting gives the numbers an uninterrupted one gives."""
    return int(hashlib.sha256(f"{seed}|{unit}".encode()).hexdigest()[:12], 16)


def run_suite(model: nn.Module, rows: AttackRows, attacks: Sequence[str], eps_list: Sequence[float],
              threat: str | Sequence[str] = "joint", settings: SuiteSettings | None = None,
              task_names: Sequence[str] | None = None, modality_names: Sequence[str] | None = None,
              log: Callable[[str], None] | None = None, source: nn.Module | None = None,
              progress: bool = False, allow_partial: bool = False, done: Sequence[dict] | None = None,
              on_unit: Callable[[list[dict]], None] | None = None) -> SuiteResult:
    """Clean accuracy, then every attack x eps x threat variant; plus the sanity probes when ``settings.sanity``.
    ``source``: the transfer attack's source model (default: the target with a frozen draw of its randomness).
    ``progress``: a progress bar (stderr) over the chunks of each attack and budget.
    ``allow_partial``: a KeyboardInterrupt after the clean pass returns what finished (``interrupted`` set, no
    probes) instead of losing it: hours of attack on a CPU, or a GPU slot's deadline, are not thrown away.
    ``done``: records of an earlier, unfinished run of this very suite on the same model and rows (same settings,
    same weights: the caller's to check); their units are taken as they are instead of run again, a carried-over
    chain's links with the rows each left robust (stored under ``rows_correct``; links stored without them, by an
    earlier mailnet, are run again). ``on_unit``: called with all records
    so far after every unit, so a caller can store progress that survives the process.

    ``eps_list`` in pixel units; ``settings.eps_ratio`` scales it per modality. Random models (detected by two
    forward passes on the same rows) get ``settings.eot`` draws per gradient step, deterministic ones 1.
    """
    settings = settings or SuiteSettings()
    log = log or (lambda s: None)
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        raise ConfigError(f"unknown attack(s) {', '.join(unknown)}; choose from {', '.join(ATTACKS)}")
    threats = [threat] if isinstance(threat, str) else list(threat)
    n_mod, n_tasks = len(rows.images), len(rows.labels)
    task_names = list(task_names or [f"task{t}" for t in range(n_tasks)])
    modality_names = list(modality_names or [f"modality{m}" for m in range(n_mod)])
    ratio = settings.eps_ratio or [1.0] * n_mod
    if len(ratio) != n_mod:
        raise ConfigError(f"eps_ratio has {len(ratio)} values for {n_mod} modalities")
    if settings.objective not in OBJECTIVES:
        raise ConfigError(f"attack objective {settings.objective!r}; choose one of {', '.join(OBJECTIVES)}")
    torch.manual_seed(settings.seed)
    with attack_mode(model):
        random_model = is_random(model, rows.take(slice(0, 8)).images)
    if random_model and "autoattack" in attacks and settings.aa_version == "standard":  # before any attack runs
        raise ConfigError("AutoAttack 'standard' judges each row by one forward pass, which on this model (random "
                          "at inference) returns the clean image wherever that draw looked robust; use --aa-version "
                          "rand")
    eot = settings.eot if random_model else 1
    result = SuiteResult(random_model=random_model)
    clean_rows = clean_correctness(model, rows, settings)
    clean = _mean_counted(clean_rows, rows)
    clean_bal = _balanced_counted(clean_rows, rows)
    counted = rows.counted()
    carry = settings.carry_over and not random_model

    def carried(attack: str) -> bool:  # the reference protocol runs exactly as published: every budget afresh
        return carry and attack != "reference"

    result.clean = [{"task": task_names[t], "n": counted[t], "clean_acc": clean[t], "clean_bal_acc": clean_bal[t],
                     **share} for t, share in enumerate(class_shares(rows))]
    balanced = [f"{task_names[t]} {clean_bal[t]:.4f}" for t in range(n_tasks) if clean_bal[t] is not None]
    log("clean accuracy: " + ", ".join(f"{task_names[t]} {clean[t]:.4f} (n={counted[t]})" for t in range(n_tasks))
        + ("; balanced: " + ", ".join(balanced) if balanced else ""))

    earlier: dict[str, list[dict]] = {}
    for r in done or []:
        if "unit" in r:
            earlier.setdefault(r["unit"], []).append(r)

    def record(attack: str, eps: float, label: str, mult: list[float], role: str,
               robust: list[torch.Tensor] | None = None, scaled: bool = True,
               **overrides) -> list[torch.Tensor] | None:
        """One unit. ``scaled=False``: the budget as given in every modality of ``mult``, not times
        ``settings.eps_ratio`` (the large-budget probe tests the attack, not the threat model)."""
        unit = unit_id(attack, role, label, eps, overrides)
        link = carried(attack) and role == "main"  # a carried-over chain's link needs the previous budget's rows
        kept = earlier.get(unit, [])
        if len(kept) == n_tasks and (not link or all(ROWS_KEY in r for r in kept)):
            stored = None  # each row's correctness, where the unit stored it (a carried-over chain's link)
            if all(ROWS_KEY in r for r in kept):
                by_task = {r["task"]: r[ROWS_KEY] for r in kept}
                stored = [torch.tensor(by_task[name], dtype=torch.float32) for name in task_names]
            bal = _balanced_counted(stored, rows) if stored is not None else [None] * n_tasks
            for r in kept:  # a unit stored by an earlier mailnet lacks the balanced accuracies: fill what is known
                t = task_names.index(r["task"])
                filled = {"clean_bal_acc": clean_bal[t], "robust_bal_acc": bal[t]}
                result.records.append({**{k: v for k, v in filled.items() if v is not None}, **r})
            result.reused += 1
            log(f"{attack:10s} {role:5s} eps={eps_to_255(eps):g}/255 perturbed={label}: done in an earlier run, kept")
            return stored if link else None  # a link: the rows it left robust, the chain goes on from them
        reseed(model, unit_seed(settings.seed, unit))
        per_mod = [eps * (r if scaled else 1.0) * k for r, k in zip(ratio, mult)]
        if robust is None and carried(attack):
            robust = clean_rows
        draws = overrides.pop("eot", eot)
        bar = f"{attack} {role} eps={eps_to_255(eps):g}/255 {label}" if progress else None
        correct, info, secs = attack_correctness(attack, model, rows, per_mod, settings, draws, robust,
                                                 source=source, progress=bar, random_model=random_model,
                                                 **overrides)
        acc, bal = _mean_counted(correct, rows), _balanced_counted(correct, rows)
        for t in range(n_tasks):
            result.records.append({
                "attack": attack, "role": role, "threat": "joint" if label == "all" else "each",
                "perturbed": label, "eps": eps, "eps_255": eps_to_255(eps), "eps_per_modality": per_mod,
                "task": task_names[t], "n": counted[t], "clean_acc": clean[t], "robust_acc": acc[t],
                "clean_bal_acc": clean_bal[t], "robust_bal_acc": bal[t],
                **info, "carried": robust is not None, "seconds": round(secs, 3), "unit": unit,
                **({ROWS_KEY: [round(float(v), 6) for v in correct[t]]} if link else {})})
        log(f"{attack:10s} {role:5s} eps={eps_to_255(eps):g}/255 perturbed={label}: "
            + ", ".join(f"{task_names[t]} {acc[t]:.4f}" for t in range(n_tasks)) + f"  ({secs:.1f}s)")
        if on_unit is not None:
            on_unit(list(result.records))
        return correct

    entering: dict[tuple[str, float], list[torch.Tensor] | None] = {}  # PGD chain: rows robust before a budget
    try:
        if random_model and settings.sanity:  # cheap (2 x EOT passes per row) and said first: it decides what the
            # gradient attacks' numbers can mean on this model
            reseed(model, unit_seed(settings.seed, "gradient-agreement"))
            result.gradient_agreement = [a.to_dict() for a in measure_agreement(
                model, rows, eot, task_names, loss=settings.loss, batch_size=settings.batch_size)]
            log(agreement_summary(result.gradient_agreement))
        for th in threats:
            for label, mult in threat_variants(th, n_mod, modality_names):
                for attack in attacks:
                    robust = None  # record() starts a carried-over chain from the clean-correct rows
                    for eps in sorted(eps_list) if carried(attack) else eps_list:
                        if attack == "pgd" and carried(attack):
                            entering[(label, eps)] = clean_rows if robust is None else robust
                        correct = record(attack, eps, label, mult, "main", robust)
                        robust = correct if carried(attack) else None
        if settings.sanity:
            _probes(record, attacks, eps_list, settings, random_model, n_mod, threats, modality_names, entering)
    except KeyboardInterrupt:
        if not allow_partial:
            raise
        result.interrupted = True
        log(f"interrupted: {len(result.records) // max(1, n_tasks)} attack x budget results finished")
    return result


def _probes(record: Callable, attacks: Sequence[str], eps_list: Sequence[float], settings: SuiteSettings,
            random_model: bool, n_mod: int, threats: Sequence[str] = ("joint",),
            modality_names: Sequence[str] | None = None,
            entering: dict[tuple[str, float], list[torch.Tensor] | None] | None = None) -> None:
    """Cheap extra runs the sanity checks compare against (one budget near 4/255). The large-budget probe perturbs
    every modality by 64/255, whatever ``eps_ratio`` (it tests the attack; a ratio would also push a budget past
    1). The fewer-steps and no-EOT probes use the threat model attacked (joint if it was, else each modality
    alone) and the main PGD's restarts, and the fewer-steps one starts from the rows the main PGD chain had left
    robust before that budget: their checks compare records that differ in steps (resp. EOT) only."""
    joint = [1.0] * n_mod
    entering = entering or {}
    record("pgd", LARGE_EPS, "all", joint, "probe", steps=LARGE_EPS_STEPS, restarts=1,
           alpha_ratio=LARGE_EPS_ALPHA_RATIO, scaled=False)
    if "pgd" not in attacks or not eps_list:
        return
    mid = min(eps_list, key=lambda e: abs(math.log(max(e, 1e-6) * 255 / 4)))
    fewer = max(1, settings.steps // 5)
    names = list(modality_names or [f"modality{m}" for m in range(n_mod)])
    for label, mult in threat_variants("joint" if "joint" in threats else "each", n_mod, names):
        if fewer < settings.steps:
            record("pgd", mid, label, mult, "probe", entering.get((label, mid)), steps=fewer)
        if random_model and settings.eot > 1:
            record("pgd", mid, label, mult, "probe", eot=1)
