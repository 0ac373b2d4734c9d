"""Summarise benchmarks/accuracy.sh: test ACC/AUC per task, mean +- std over the finished seeds, next to the
official MedMNIST v2 ResNet-18 (28) figures, plus wall time per epoch. Prints markdown."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

OFFICIAL = {"pneumonia": (0.854, 0.944), "breast": (0.863, 0.901)}  # MedMNIST v2 paper, ResNet-18 (28)


def main(root: str = "benchmarks/work/acc") -> None:
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
            for k in ("acc", "auc"):
                v = [t["tasks"][task][k] for t in tests]
                cells.append(f"{np.mean(v):.3f} +- {np.std(v):.3f}")
        ps = [np.mean(list(t.get("partner_sensitivity", {}).values()) or [np.nan]) for t in tests]
        seeds = ",".join(r.name.replace("seed", "") for r in runs)
        rows.append(f"| {model_dir.name} | {seeds} | " + " | ".join(cells)
                    + f" | {np.nanmean(ps):.3f} | {np.mean(secs):.0f} |")
    print("| model | seeds | Pneumonia ACC | Pneumonia AUC | Breast ACC | Breast AUC | partner sens. | s/epoch |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    o = OFFICIAL
    print(f"| *MedMNIST v2 paper, ResNet-18 (28), 100 epochs (not measured here)* | | {o['pneumonia'][0]:.3f} | "
          f"{o['pneumonia'][1]:.3f} | {o['breast'][0]:.3f} | {o['breast'][1]:.3f} | | |")


if __name__ == "__main__":
    main(*sys.argv[1:])
