"""Writing the suite's results: a flat CSV, a JSON with every setting and the sanity checks, and a PNG of
accuracy vs epsilon (one panel per task, one line per attack, clean accuracy as a dashed line)."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Sequence

from mailnet.attacks.eps import eps_to_255
from mailnet.utils import atomic_write, write_json, write_text

# eps/eps_255: the nominal budget; eps_per_modality_255: what each modality really got (``--eps-ratio``, and 0 for
# the modalities a ``--threat each`` row leaves clean), e.g. ``2;1``; interrupted: the run stopped early, so the
# file holds only the budgets that finished (a reader of the CSV alone must be able to tell); objective (per-task
# or summed), iterate (best or last) and carried (worst case over the smaller budgets, or this budget afresh) say
# how a figure was obtained, so two rows of the CSV alone can be compared; clean_bal_acc / robust_bal_acc: balanced
# accuracy (mean per-class accuracy; empty for multi-label tasks and for records of an earlier mailnet)
CSV_FIELDS = ("attack", "role", "threat", "perturbed", "task", "eps_255", "eps", "eps_per_modality_255", "n",
              "clean_acc", "robust_acc", "steps", "restarts", "eot", "loss", "alpha_ratio", "random_start", "momentum",
              "version", "source", "objective", "iterate", "carried", "attacked_rows", "seconds", "interrupted",
              "clean_bal_acc", "robust_bal_acc")


def per_modality_255(r: dict) -> str:
    """``2;1``: a record's per-modality budget in /255 units, ``;``-joined (empty when not recorded)."""
    return ";".join(f"{eps_to_255(e):g}" for e in r.get("eps_per_modality") or [])


def records_csv(records: Sequence[dict], interrupted: bool = False) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in records:
        row = {k: r.get(k, "") for k in CSV_FIELDS}
        row["eps_per_modality_255"] = per_modality_255(r)
        row["interrupted"] = interrupted
        writer.writerow(row)
    return buf.getvalue()


def text_table(records: Sequence[dict], clean: Sequence[dict]) -> str:
    """Robust accuracy, one row per (attack, perturbed, task), one column per eps (main records only); then the
    same for balanced accuracy, with each task's majority-class share: a model that answers one class keeps that
    share as its accuracy under any attack, so accuracy alone can look like robustness."""
    main = [r for r in records if r["role"] == "main"]
    lines = _block(main, "clean_acc", "robust_acc", "(robust accuracy at eps/255)")
    if any(r.get("robust_bal_acc") is not None for r in main):
        lines += [""] + _block(main, "clean_bal_acc", "robust_bal_acc", "(balanced accuracy: mean per-class accuracy)")
        shares = [f"{c['task']} {c['majority_acc']:.4f} ({c['classes']} classes)" for c in clean if "majority_acc" in c]
        if shares:
            lines.append("answering the majority class everywhere scores accuracy " + ", ".join(shares)
                         + " and balanced accuracy 1/classes")
        lines += near_chance_notes(clean)
    return "\n".join(lines + budget_notes(main))


NEAR_CHANCE_MARGIN = 0.05  # a clean balanced accuracy within this of 1 / classes: a head that answers one class


def near_chance_notes(clean: Sequence[dict]) -> list[str]:
    """A NOTE per task whose clean balanced accuracy is within ``NEAR_CHANCE_MARGIN`` of chance: that head answers
    (almost) one class, so its robust accuracy is that class's share, which no attack can lower."""
    notes = []
    for c in clean:
        bal, k = c.get("clean_bal_acc"), c.get("classes")
        if bal is not None and k and k >= 2 and bal <= 1.0 / k + NEAR_CHANCE_MARGIN:  # one class: nothing to tell
            notes.append(f"NOTE: {c['task']}: clean balanced accuracy {bal:.4f}, chance {1.0 / k:.4f}: this head "
                         f"answers (almost) one class, so its robust accuracy is that class's share "
                         f"({c['majority_acc']:.4f} of these rows), not robustness")
    return notes


def _cell(v) -> str:
    return f"{'-':>7s}" if v is None else f"{v:7.4f}"


def _block(main: Sequence[dict], clean_key: str, robust_key: str, caption: str) -> list[str]:
    eps_values = sorted({r["eps_255"] for r in main})
    head = f"{'attack':11s} {'perturbed':12s} {'task':14s} {'clean':>7s} " + " ".join(f"{e:>7g}" for e in eps_values)
    lines = [f"{head}   {caption}", "-" * len(head)]
    rows: dict[tuple, dict] = {}
    for r in main:
        rows.setdefault((r["attack"], r["perturbed"], r["task"]), {})[r["eps_255"]] = r
    for (attack, pert, task), by_eps in rows.items():
        clean = next((r[clean_key] for r in by_eps.values() if r.get(clean_key) is not None), None)
        cells = " ".join(_cell(by_eps[e].get(robust_key)) if e in by_eps else f"{'-':>7s}" for e in eps_values)
        lines.append(f"{attack:11s} {pert:12s} {task:14s} {_cell(clean)} {cells}")
    return lines


def attack_settings(records: Sequence[dict]) -> str:
    """``reference: 10 steps, EOT 1; pgd: 20 steps x1 restart, EOT 10``: what each attack of the main records ran
    with, read from the records (the command's --steps/--eot do not apply to every attack: the reference protocol
    has its own, and deterministic models get one draw)."""
    seen: dict[str, set[str]] = {}
    for r in records:
        if r.get("role") != "main":
            continue
        unit = {'autoattack': 'iterations', 'square': 'queries'}.get(r['attack'], 'steps')
        parts = [f"{r.get('steps')} {unit}"]
        if r.get("restarts", 1) != 1:
            parts[0] += f" x{r['restarts']} restarts"
        parts.append(f"EOT {r.get('eot', 1)}")
        seen.setdefault(r["attack"], set()).add(", ".join(parts))
    return "; ".join(f"{a}: {' / '.join(sorted(v))}" for a, v in seen.items())


def budget_notes(main: Sequence[dict]) -> list[str]:
    """Lines naming the per-modality budgets where they differ from the nominal eps (``--eps-ratio``): the columns
    show the nominal budget only."""
    notes: dict[tuple, str] = {}
    for r in main:
        per = r.get("eps_per_modality") or []
        if any(eps_to_255(e) not in (0.0, r["eps_255"]) for e in per):
            notes.setdefault((r["perturbed"], r["eps_255"]), per_modality_255(r))
    return [f"  eps {e:g} perturbed={p}: per-modality budget {v} (/255)" for (p, e), v in notes.items()]


def plot_accuracy_vs_eps(records: Sequence[dict], clean: Sequence[dict], path: str | Path, title: str = "") -> None:
    """One panel per task; one line per (attack, perturbed) pair from eps 0 (clean); clean accuracy dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = [r for r in records if r["role"] == "main"]
    tasks = [c["task"] for c in clean]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    for ax, c in zip(axes[0], clean):
        lines: dict[str, list[tuple[float, float]]] = {}
        for r in main:
            if r["task"] == c["task"]:
                label = r["attack"] if r["perturbed"] == "all" else f"{r['attack']} ({r['perturbed']} only)"
                lines.setdefault(label, []).append((r["eps_255"], r["robust_acc"]))
        for label, pts in lines.items():
            pts = sorted(pts + [(0.0, c["clean_acc"])])  # every curve starts at the clean accuracy (eps 0)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        ax.axhline(c["clean_acc"], color="gray", linestyle="--", label="clean")
        if "majority_acc" in c:  # a constant answer's accuracy: robust accuracy near it is not robustness
            ax.axhline(c["majority_acc"], color="gray", linestyle=":", label="majority class")
        ax.set_title(f"{c['task']} (n={c['n']})")
        ax.set_xlabel("eps (/255)")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()

    def _save(tmp: str) -> None:
        fig.savefig(tmp, dpi=110, format="png")

    atomic_write(path, _save)
    plt.close(fig)


def write_results(out_dir: str | Path, stem: str, payload: dict, records: Sequence[dict], clean: Sequence[dict],
                  title: str = "", interrupted: bool = False) -> dict[str, Path]:
    """``<stem>.json`` (payload), ``<stem>.csv`` (records) and ``<stem>.png`` under ``out_dir``."""
    out = Path(out_dir)
    paths = {"json": out / f"{stem}.json", "csv": out / f"{stem}.csv", "png": out / f"{stem}.png"}
    write_text(paths["csv"], records_csv(records, interrupted=interrupted))
    plot_accuracy_vs_eps(records, clean, paths["png"], title=title)
    write_json(paths["json"], payload)
    return paths
