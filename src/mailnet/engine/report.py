"""Plain-text tables of metrics, and mean +- std over seeds."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

COLUMNS = (("acc", "ACC"), ("auc", "AUC"), ("f1", "F1"), ("bal_acc", "BalAcc"), ("ece", "ECE"))


def metrics_table(result: dict[str, Any], title: str = "") -> str:
    """One row per task; draw statistics and partner sensitivity when the evaluation measured them."""
    lines = [title] if title else []
    extra_ps = "partner_sensitivity" in result
    header = f"{'task':<14}" + "".join(f"{h:>9}" for _, h in COLUMNS) + f"{'n':>7}"
    header += f"{'partner-sens':>14}" if extra_ps else ""
    lines += [header, "-" * len(header)]
    for name, m in result["tasks"].items():
        row = f"{name:<14}" + "".join(f"{m[k]:>9.4f}" for k, _ in COLUMNS) + f"{m['n']:>7d}"
        if extra_ps:
            row += f"{result['partner_sensitivity'][name]:>14.4f}"
        lines.append(row)
    lines += auc_footnotes(result)
    if result.get("draws", 1) > 1:
        lines.append(f"(random at inference: metrics of the {result['draws']}-draw averaged prediction; "
                     "per-draw mean +- std:)")
        for name, st in result["draw_stats"].items():
            lines.append(f"  {name:<12} ACC {st['acc']['mean']:.4f} +- {st['acc']['std']:.4f}   "
                         f"AUC {st['auc']['mean']:.4f} +- {st['auc']['std']:.4f}")
    return "\n".join(lines)


def auc_footnotes(result: dict[str, Any]) -> list[str]:
    """One line per task whose AUC is nan, saying why (``auc_note`` of the metrics), so the nan in the table is
    explained once instead of by sklearn warnings on every evaluation."""
    split = result.get("split")
    lines = []
    for name, m in result["tasks"].items():
        if isinstance(m.get("auc"), float) and math.isnan(m["auc"]):
            where = f"{name}'s {split} split" if split else f"{name}'s evaluated samples"
            lines.append(f"AUC n/a: {m.get('auc_note') or 'undefined'} in {where}")
    return lines


def seeds_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per task and metric: mean, std (population, ddof=0) and the per-seed values."""
    out: dict[str, Any] = {}
    for name in results[0]["tasks"]:
        out[name] = {}
        for k, _ in COLUMNS:
            vals = [r["tasks"][name][k] for r in results]
            out[name][k] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "values": vals}
    return out


def seeds_table(summary: dict[str, Any], seeds: list[int]) -> str:
    lines = [f"mean +- std over seeds {','.join(map(str, seeds))}"]
    header = f"{'task':<14}" + "".join(f"{h:>18}" for _, h in COLUMNS)
    lines += [header, "-" * len(header)]
    for name, m in summary.items():
        lines.append(f"{name:<14}" + "".join(f"{m[k]['mean']:>10.4f} +-{m[k]['std']:.4f}" for k, _ in COLUMNS))
    return "\n".join(lines)
