"""Summarise benchmarks/accuracy.sh: test ACC/AUC per task, mean +- std over the finished seeds, next to the
official MedMNIST v2 ResNet-18 (28) figures, plus wall time per epoch. Prints markdown.

    python benchmarks/accuracy_table.py benchmarks/work/acc10                      # ACC and AUC
    python benchmarks/accuracy_table.py ROOT --metrics acc,auc,bal_acc             # and balanced accuracy
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

OFFICIAL = {"pneumonia": {"acc": 0.854, "auc": 0.944}, "breast": {"acc": 0.863, "auc": 0.901}}  # MedMNIST v2 paper,
# ResNet-18 (28)
NAMES = {"acc": "ACC", "auc": "AUC", "bal_acc": "balanced acc.", "f1": "F1"}


def main(root: str = "benchmarks/work/acc", metrics: tuple[str, ...] = ("acc", "auc")) -> None:
    rows = []
    for model_dir in sorted(Path(root).iterdir()):
        if not model_dir.is_dir():
            continue
        runs = sorted(r for r in model_dir.iterdir() if (r / "FINISHED").is_file())
        if not runs:
            continue
        tests = [json.loads((r / "test_metrics.json").read_text()) for r in runs]
        secs = [h["seconds"] for r in runs for h in json.loads((r / "metrics.json").read_text())]
        cells = []
        for task in OFFICIAL:
            for k in metrics:
                v = [t["tasks"][task][k] for t in tests]
                cells.append(f"{np.mean(v):.3f} +- {np.std(v):.3f}")
        ps = [np.mean(list(t.get("partner_sensitivity", {}).values()) or [np.nan]) for t in tests]
        seeds = ",".join(r.name.replace("seed", "") for r in runs)
        rows.append(f"| {model_dir.name} | {seeds} | " + " | ".join(cells)
                    + f" | {np.nanmean(ps):.3f} | {np.mean(secs):.0f} |")
    head = [f"{task.capitalize()} {NAMES.get(k, k)}" for task in OFFICIAL for k in metrics]
    print("| model | seeds | " + " | ".join(head) + " | partner sens. | s/epoch |")
    print("| --- | --- | " + " | ".join("---" for _ in head) + " | --- | --- |")
    print("\n".join(rows))
    paper = [f"{OFFICIAL[task][k]:.3f}" if k in OFFICIAL[task] else "" for task in OFFICIAL for k in metrics]
    print("| *MedMNIST v2 paper, ResNet-18 (28), 100 epochs (not measured here)* | | " + " | ".join(paper) + " | | |")

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default="benchmarks/work/acc", help="folder of MODEL/seedS run folders")
    ap.add_argument("--metrics", default="acc,auc", help="comma-separated test metrics per task (acc, auc, bal_acc, f1)")
    args = ap.parse_args()
    main(args.root, tuple(m.strip() for m in args.metrics.split(",") if m.strip()))
