"""Sanity checks that must hold or the robustness evaluation is broken (design doc section 4).

They read the suite's records only (no model), so a table from anywhere can be checked. "Beyond noise" means
beyond two standard errors of the difference of two accuracies on n rows (at least 1.5 rows' worth): random
defences and random starts make every number noisy.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Sequence

LARGE_EPS_255 = 32.0  # budgets at least this large must drive accuracy to about 0
NEAR_ZERO = 0.10


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


def tolerance(p1: float, p2: float, n: int) -> float:
    """Two standard errors of a difference of two accuracies on ``n`` independent rows. Rows scored by one forward
    pass of a model whose random draw is shared by a batch (Robust-MAIL's random filters) are not independent; the
    allowance then holds only when each row is scored over several draws (``--eval-draws``)."""
    n = max(1, int(n))
    se = math.sqrt(max(p1 * (1 - p1), 0.0) / n + max(p2 * (1 - p2), 0.0) / n)
    return max(2.0 * se, 1.5 / n)


def not_above(a: float, b: float, n: int) -> bool:
    """``a <= b`` up to sampling noise on ``n`` rows: the form of every ordering check below."""
    return a <= b + tolerance(a, b, n)


def _ascending_pairs(groups: dict[tuple, list[dict]], field: str):
    """Consecutive records of each group ordered by ``field``: (smaller setting, larger setting)."""
    for rs in groups.values():
        rs = sorted(rs, key=lambda r: r[field])
        yield from zip(rs, rs[1:])


def _key(r: dict, *fields: str) -> tuple:
    return tuple(r.get(f) for f in fields)


def check_large_eps(records: Sequence[dict], threshold: float = NEAR_ZERO) -> list[Check]:
    """Accuracy falls to about 0 at a large budget (else gradients are masked or the attack is broken)."""
    out = []
    for r in records:
        if r["eps_255"] >= LARGE_EPS_255 and r.get("threat") == "joint":
            bound = threshold + tolerance(r["robust_acc"], 0.0, r["n"]) / 2
            out.append(Check("accuracy ~0 at large eps", r["robust_acc"] <= bound,
                             f"{r['attack']} eps={r['eps_255']:g}/255 task={r['task']}: robust acc "
                             f"{r['robust_acc']:.3f} (must be <= {threshold:.2f} + sampling tolerance = "
                             f"{bound:.3f}, n={r['n']})"))
    return out


def check_more_steps(records: Sequence[dict]) -> list[Check]:
    """More PGD steps never raise robust accuracy (same attack, budget, variant, task, EOT, restarts and rows
    attacked: a run with more restarts, or one carried over from smaller budgets, would win for other reasons)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if r["attack"] == "pgd":
            groups[_key(r, "eps_255", "perturbed", "task", "eot", "loss", "restarts", "carried")].append(r)
    out = []
    for lo, hi in _ascending_pairs(groups, "steps"):
        if hi["steps"] == lo["steps"]:
            continue
        ok = not_above(hi["robust_acc"], lo["robust_acc"], hi["n"])
        out.append(Check("more PGD steps never help the model", ok,
                         f"eps={hi['eps_255']:g}/255 task={hi['task']}: {lo['steps']} steps -> "
                         f"{lo['robust_acc']:.3f}, {hi['steps']} steps -> {hi['robust_acc']:.3f}"))
    return out


def check_autoattack_le_pgd(records: Sequence[dict]) -> list[Check]:
    """AutoAttack is at least as strong as our PGD (else our PGD is evaluated wrong, or AutoAttack is crippled)."""
    pgd = {_key(r, "eps_255", "perturbed", "task"): r for r in records if r["attack"] == "pgd" and r["role"] == "main"}
    out = []
    for r in records:
        if r["attack"] != "autoattack":
            continue
        p = pgd.get(_key(r, "eps_255", "perturbed", "task"))
        if p is None:
            continue
        ok = not_above(r["robust_acc"], p["robust_acc"], r["n"])
        out.append(Check("AutoAttack <= PGD", ok, f"eps={r['eps_255']:g}/255 perturbed={r['perturbed']} "
                         f"task={r['task']}: AutoAttack {r['robust_acc']:.3f}, PGD {p['robust_acc']:.3f}"))
    return out


def check_eot_le_noeot(records: Sequence[dict]) -> list[Check]:
    """For a random model, EOT-PGD is at least as strong as the same PGD without EOT."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if r["attack"] == "pgd":
            groups[_key(r, "eps_255", "perturbed", "task", "loss")].append(r)
    out = []
    for rs in groups.values():
        with_eot = [r for r in rs if r["eot"] > 1]
        without = [r for r in rs if r["eot"] == 1]
        for e in with_eot:
            for w in without:
                if w["steps"] > e["steps"]:
                    continue  # a longer no-EOT run is not the comparison the check is about
                ok = not_above(e["robust_acc"], w["robust_acc"], e["n"])
                out.append(Check("EOT <= no-EOT (random model)", ok,
                                 f"eps={e['eps_255']:g}/255 task={e['task']}: EOT={e['eot']} -> "
                                 f"{e['robust_acc']:.3f}, no EOT ({w['steps']} steps) -> {w['robust_acc']:.3f}"))
    return out


def check_monotone_eps(records: Sequence[dict]) -> list[Check]:
    """A larger budget never helps the model (same attack, variant, task, settings). Not checked on a carried-over
    chain (deterministic models), where it holds by construction: a row broken at one budget counts as broken at
    every larger one, so such a check could not fail and would only inflate the count of checks passed."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if r["role"] == "main" and not r.get("carried"):
            groups[_key(r, "attack", "perturbed", "task", "steps", "eot")].append(r)
    out = []
    for lo, hi in _ascending_pairs(groups, "eps"):
        ok = not_above(hi["robust_acc"], lo["robust_acc"], hi["n"])
        out.append(Check("accuracy does not grow with eps", ok,
                         f"{hi['attack']} perturbed={hi['perturbed']} task={hi['task']}: eps "
                         f"{lo['eps_255']:g} -> {lo['robust_acc']:.3f}, "
                         f"{hi['eps_255']:g} -> {hi['robust_acc']:.3f}"))
    return out


WHITE_BOX = ("pgd", "autoattack", "reference", "fgsm", "bim", "mim")


def check_whitebox_le_transfer(records: Sequence[dict]) -> list[Check]:
    """The best white-box attack is at least as strong as a transfer attack, which uses no gradient of the target
    (else the target's gradients are masked: its white-box numbers overstate robustness)."""
    best: dict[tuple, dict] = {}
    for r in records:
        if r["attack"] in WHITE_BOX and r["role"] == "main":
            k = _key(r, "eps_255", "perturbed", "task")
            if k not in best or r["robust_acc"] < best[k]["robust_acc"]:
                best[k] = r
    out = []
    for r in records:
        if r["attack"] != "transfer":
            continue
        w = best.get(_key(r, "eps_255", "perturbed", "task"))
        if w is None:
            continue
        ok = not_above(w["robust_acc"], r["robust_acc"], r["n"])
        out.append(Check("white-box <= transfer", ok, f"eps={r['eps_255']:g}/255 perturbed={r['perturbed']} "
                         f"task={r['task']}: best white-box ({w['attack']}) {w['robust_acc']:.3f}, transfer from "
                         f"{r.get('source', '?')} {r['robust_acc']:.3f}"))
    return out


def check_robust_le_clean(records: Sequence[dict]) -> list[Check]:
    out = []
    for r in records:
        if not not_above(r["robust_acc"], r["clean_acc"], r["n"]):
            out.append(Check("robust <= clean", False, f"{r['attack']} eps={r['eps_255']:g}/255 task={r['task']}: "
                             f"robust {r['robust_acc']:.3f} > clean {r['clean_acc']:.3f}"))
    return out


CHECKS = (check_large_eps, check_more_steps, check_autoattack_le_pgd, check_eot_le_noeot, check_monotone_eps,
          check_whitebox_le_transfer, check_robust_le_clean)


AGREEMENT_SE = 3.0  # standard errors above 0; the error comes from a handful of groups (MIN_GROUPS or more)
WEAK_AGREEMENT = 0.2  # below this the estimate is mostly noise even when it beats chance


def check_gradient_agreement(agreements: Sequence[dict]) -> list[Check]:
    """Two independent EOT gradient estimates agree beyond chance (``mailnet.attacks.gradient_agreement``): if not,
    the gradient attacks' steps are a random walk on this random model and their robust accuracy is no evidence."""
    out = []
    for a in agreements:
        se = a["cos_eot_se"]
        if not se == se:  # too few independent groups of draws for a standard error
            continue
        about = (f"task={a['task']}: cosine between two independent {a['draws']}-draw gradient means "
                 f"{a['cos_eot']:.3f} ({AGREEMENT_SE:g} standard errors over {a.get('groups', '?')} groups of rows: "
                 f"{AGREEMENT_SE * se:.3f}; same sign on {a['sign_eot']:.3f} of the input; single draws "
                 f"{a['cos_single']:.3f}, gradient norm {a['grad_norm']:.3g})")
        if a["grad_norm"] == 0:
            out.append(Check("EOT gradient estimates agree beyond chance", False,
                             about + "; the input gradient is exactly 0 (vanishing, or no input reaches this head): "
                                     "gradient attacks cannot move this head"))
            continue
        ok = a["cos_eot"] > AGREEMENT_SE * se
        if not ok:
            about += ("; the EOT gradient is noise here, so gradient attacks take random steps and their robust "
                      "accuracy is not evidence of robustness (stochastic gradients): use many more --eot draws, "
                      "or a transfer attack")
        elif a["cos_eot"] < WEAK_AGREEMENT:
            about += "; weak: mostly noise, gradient attacks on this model need many steps and draws"
        out.append(Check("EOT gradient estimates agree beyond chance", ok, about))
    return out


def run_sanity(records: Sequence[dict], agreements: Sequence[dict] = ()) -> list[Check]:
    """Every check on one table (and on the gradient-agreement probe of a random model, when it ran); failing ones
    have ``passed=False``. Records without a number (NaN: an attack that does not apply to that task) are left
    out."""
    scored = [r for r in records if r["robust_acc"] == r["robust_acc"]]
    return [c for fn in CHECKS for c in fn(scored)] + check_gradient_agreement(agreements)


def failures(checks: Sequence[Check]) -> list[Check]:
    return [c for c in checks if not c.passed]
