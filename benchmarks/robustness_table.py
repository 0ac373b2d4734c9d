"""Summarise the issue-5 robustness benchmark (benchmarks/robustness.sh): one markdown row per (model, attack),
clean and robust accuracy per epsilon, "pneumonia / breast", with the settings and seconds each attack took; then
the same rows as balanced accuracy (mean per-class accuracy) for the results that recorded it, with each task's
majority-class share (what answering one class everywhere scores, under any attack).

    python benchmarks/robustness_table.py [benchmarks/work/rob/attacks]
    python benchmarks/robustness_table.py OLDER_DIR NEWER_DIR     # one table; a folder in NEWER_DIR replaces the
                                                                  # one of the same name in OLDER_DIR (a resumed run)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def describe(rec: dict, random_model: bool) -> str:
    """What the attack was, in the words of the issue (reference / EOT-PGD / AutoAttack-rand)."""
    if rec["attack"] == "reference":
        return "reference (PGD-10, eps/4, no EOT)"
    if rec["attack"] == "transfer":
        src = rec.get("source") or "?"
        if src.startswith("frozen"):
            src = "frozen draw of itself"
        elif src.startswith("the target at"):
            src = "itself at its random variables' means"
        else:
            src = "/".join(Path(src).parts[-2:])
        return f"transfer from {src} (PGD-{rec['steps']})"
    if rec["attack"] == "autoattack":
        if not random_model and rec.get("version", "rand") == "rand":  # no randomness: no EOT to speak of
            return f"AutoAttack APGD-CE + APGD-DLR ({rec['steps']} it)"
        return f"AutoAttack-{rec.get('version', 'rand')} ({rec['steps']} it, EOT {rec['eot']})"
    if rec["attack"] == "square":
        return f"Square ({rec['steps']} queries" + (f", EOT {rec['eot']})" if random_model else ")")
    eot = f", EOT {rec['eot']}" if random_model else ""
    # records made since commit 4deef86 say how the heads were attacked; older ones summed the loss over heads
    how = ", each head on its own" if rec.get("objective") == "per-task" else ""
    return f"PGD-{rec['steps']} x{rec['restarts']}{eot}{how}"


def main(*roots: str) -> None:
    roots = roots or ("benchmarks/work/rob/attacks",)
    found: dict[str, Path] = {}
    for root in roots:
        found.update({path.parent.name: path for path in Path(root).glob("*/attack_test.json")})
    if not found:
        sys.exit(f"no attack results (*/attack_test.json) in {', '.join(roots)}")
    merged: dict[tuple[str, str, tuple], list] = {}
    majority: dict[tuple[int, str, int], float] = {}
    eps_all: set[float] = set()
    for _, path in sorted(found.items()):
        p = json.loads(path.read_text())
        label = path.parent.name.split("__")[0]
        clean = {c["task"]: c["clean_acc"] for c in p["clean"]}
        clean_bal = {c["task"]: c.get("clean_bal_acc") for c in p["clean"]}
        majority.update({(len(p["clean"]), c["task"], c["n"]): c["majority_acc"] for c in p["clean"]
                         if "majority_acc" in c})
        n = {c["task"]: c["n"] for c in p["clean"]}
        main_recs = [r for r in p["records"] if r["role"] == "main" and r["threat"] == "joint"]
        checks = p["sanity"]["checks"]  # none: the run had --no-sanity (an empty list "passes" vacuously)
        sanity = "not run" if not checks else "ok" if p["sanity"]["passed"] else "FAILED: " + "; ".join(
            c["name"] for c in checks if not c["passed"])
        if p.get("interrupted"):  # the budgets that finished before a deadline; the probes did not run
            sanity = f"interrupted, partial ({sanity} on what finished)"
        groups: dict[str, list[dict]] = {}
        for r in main_recs:
            groups.setdefault(describe(r, p["random_model"]), []).append(r)
        # one row per (model, attack, attacked subset), whichever folders its budgets came from, unless two folders
        # measured the same budget: the later folder then gets a row of its own
        for attack, recs in groups.items():
            key = (label, attack, tuple(n.items()))
            if key in merged and any(r["task"] in merged[key][2]["acc"].get(r["eps_255"], {}) for r in recs):
                key = (f"{label} ({path.parent.name.split('__', 1)[-1]} run)", attack, key[2])
            entry = merged.setdefault(key, [clean, n, {"acc": {}, "bal": {}, "clean_bal": {}, "seconds": 0.0},
                                            set(), path])
            entry[3].add(sanity)
            d = entry[2]
            d["clean_bal"].update({t: v for t, v in clean_bal.items() if v is not None})
            for r in recs:
                d["acc"].setdefault(r["eps_255"], {})[r["task"]] = r["robust_acc"]
                d["bal"].setdefault(r["eps_255"], {})[r["task"]] = r.get("robust_bal_acc")
                d["seconds"] += r["seconds"] / len(clean)
                eps_all.add(r["eps_255"])
    rows = [(label, attack, clean, n, d, "; ".join(sorted(s)))
            for (label, attack, _), (clean, n, d, s, _) in merged.items()]
    eps = sorted(eps_all)
    tasks = list(rows[0][2]) if rows else []
    print("| model | attack | n (" + " / ".join(tasks) + ") | clean | "
          + " | ".join(f"eps {e:g}/255" for e in eps) + " | seconds | sanity |")
    print("|" + "---|" * (6 + len(eps)))
    for label, attack, clean, n, d, sanity in rows:
        cells = [" / ".join(f"{d['acc'][e][t]:.3f}" for t in tasks) if e in d["acc"] else "-" for e in eps]
        print(f"| {label} | {attack} | {' / '.join(str(n[t]) for t in tasks)} | "
              + " / ".join(f"{clean[t]:.3f}" for t in tasks) + " | " + " | ".join(cells)
              + f" | {d['seconds']:.0f} | {sanity} |")
    balanced = [row for row in rows if any(v is not None for by in row[4]["bal"].values() for v in by.values())]
    if not balanced:
        return
    print("\nBalanced accuracy (mean per-class accuracy; 1 / classes for a constant answer), where recorded:\n")
    print("| model | attack | clean | " + " | ".join(f"eps {e:g}/255" for e in eps) + " |")
    print("|" + "---|" * (3 + len(eps)))
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for label, attack, _, _, d, _ in balanced:
        cells = [" / ".join(fmt(d["bal"][e].get(t)) for t in tasks) if e in d["bal"] else "-" for e in eps]
        print(f"| {label} | {attack} | " + " / ".join(fmt(d["clean_bal"].get(t)) for t in tasks) + " | "
              + " | ".join(cells) + " |")
    if majority:
        print("\nMajority-class share of the attacked rows: " + "; ".join(
            f"{task} {share:.3f} (n={n})" for (_, task, n), share in sorted(majority.items())))


if __name__ == "__main__":
    main(*sys.argv[1:])
