"""The bench report: ``report.md`` (tables), ``results.csv`` (every number, one row each) and PNG charts.

Everything here reads only the small records of ``mailnet.bench.runner`` (never weights), so a report can be
rebuilt at any time from committed results (``mailnet bench SUITE --report-only``).
"""
from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from mailnet.attacks.report import NEAR_CHANCE_MARGIN
from mailnet.bench.runner import BenchOutcome, counted, predates_per_head, stored_units
from mailnet.bench.suite import attack_key
from mailnet.errors import MailnetError
from mailnet.utils import write_text

ACC_METRICS = (("acc", "ACC"), ("auc", "AUC"), ("f1", "F1"))
CSV_FIELDS = ("suite", "composition", "model", "model_name", "seed", "key", "kind", "task", "metric", "attack", "eps",
              "objective", "epoch", "value")
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


# ------------------------------------------------------------------------------------------------------ numbers


def mean_std(values: list[float]) -> tuple[float, float, int]:
    """Mean and population std (ddof=0, as ``engine.report.seeds_summary``) of the finite values, and their count."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return float("nan"), float("nan"), 0
    return float(np.mean(v)), float(np.std(v)), len(v)


def fmt_ms(values: list[float], digits: int = 4) -> str:
    m, s, n = mean_std(values)
    if n == 0:
        return "-"
    return f"{m:.{digits}f}" if n == 1 else f"{m:.{digits}f} ± {s:.{digits}f}"


def _records_by(outcome: BenchOutcome) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """composition -> model label -> the records of its finished seeds (suite order kept)."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for job in outcome.jobs:
        per_model = out.setdefault(job.composition.name, {}).setdefault(job.model.label, [])
        rec = outcome.records.get(job.key)
        if rec is not None:
            per_model.append(rec)
    return out


def _task_names(recs: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for r in recs:
        for t in r["test"]["tasks"]:
            if t not in names:
                names.append(t)
    return names


def _attack_rows(rec: dict[str, Any], akey: str | None) -> list[dict[str, Any]]:
    """The record's attack rows, each with the bookkeeping it was measured with: ``objective`` and, for entries
    stored before per-head attacks (commit 4deef86, no objective recorded), ``legacy`` and ``random_model``."""
    if akey is None:
        return []
    entry = rec.get("attacks", {}).get(akey)
    if not entry:
        return []
    objective, legacy = _objective(entry), predates_per_head(entry)
    return [{**row, "objective": "summed" if row["attack"] == "reference" else objective, "legacy": legacy,
             "random_model": bool(entry.get("random_model"))} for row in entry.get("rows", [])]


def _objective(entry: dict[str, Any]) -> str:
    """How the gradient attacks of a stored attack entry treated several heads. Entries stored before heads were
    attacked one by one record no objective: they summed the loss over the heads."""
    return (entry.get("suite_settings") or {}).get("objective", "summed")


def attack_label(row: dict[str, Any]) -> str:
    """The attack's name, qualified where the row was measured with a weaker bookkeeping, so that such rows are
    never averaged with the others: gradient attacks that summed the loss over heads, and (before commit 4deef86)
    the reference protocol carried over budgets on a deterministic model (rows broken at a smaller budget were not
    attacked again, which is not the published protocol)."""
    if row["attack"] == "reference":
        return "reference (carried over budgets)" if row.get("legacy") and not row.get("random_model") else "reference"
    return row["attack"] if row["objective"] == "per-task" else f"{row['attack']} (summed loss)"


def _mean_task_acc(rec: dict[str, Any]) -> float:
    accs = [m["acc"] for m in rec["test"]["tasks"].values()]
    return float(np.mean(accs)) if accs else float("nan")


# ------------------------------------------------------------------------------------------------------ CSV


def csv_rows(outcome: BenchOutcome) -> list[dict[str, Any]]:
    """One row per measurement: test metrics, per-epoch history, robust accuracy, cost."""
    suite = outcome.suite.name
    akey = attack_key(outcome.suite.attacks) if outcome.suite.attacks else None
    rows: list[dict[str, Any]] = []
    for job in outcome.jobs:
        rec = outcome.records.get(job.key)
        if rec is None:
            continue
        base = {"suite": suite, "composition": job.composition.name, "model": job.model.label,
                "model_name": job.model.name, "seed": job.seed, "key": job.key}
        for task, m in rec["test"]["tasks"].items():
            for metric, value in m.items():
                if isinstance(value, (int, float)):
                    rows.append({**base, "kind": "test", "task": task, "metric": metric, "value": value})
        for metric in ("mean_acc", "mean_auc", "loss"):
            if isinstance(rec["test"].get(metric), (int, float)):
                rows.append({**base, "kind": "test", "task": "mean" if metric != "loss" else "",
                             "metric": metric, "value": rec["test"][metric]})
        rows.append({**base, "kind": "train", "metric": "train_seconds", "value": rec.get("train_seconds")})
        for h in rec.get("history", []):
            for metric, value in h.items():
                if metric != "epoch" and isinstance(value, (int, float)):
                    rows.append({**base, "kind": "history", "metric": metric, "epoch": h["epoch"], "value": value})
        for r in _attack_rows(rec, akey):
            for metric in ("robust_acc", "clean_acc", "robust_bal_acc", "clean_bal_acc"):
                if r.get(metric) is not None:
                    rows.append({**base, "kind": "attack", "task": r["task"], "metric": metric,
                                 "attack": attack_label(r), "eps": r["eps"], "objective": r["objective"],
                                 "value": r[metric]})
    for c in outcome.costs:
        if c.record is None:
            continue
        base = {"suite": suite, "composition": c.composition, "model": c.model, "key": c.key, "kind": "cost"}
        for metric in ("params", "macs", "flops", "latency_ms", "forward_samples_per_s", "train_step_ms",
                       "train_samples_per_s"):
            value = c.record["cost"].get(metric)
            if value is not None:
                rows.append({**base, "task": f"{c.size}px" if c.size else "", "metric": metric, "value": value})
    return rows


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CSV_FIELDS), extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_FIELDS})
    write_text(path, buf.getvalue())


# ------------------------------------------------------------------------------------------------------ markdown


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def header_section(outcome: BenchOutcome, machine: dict[str, Any], command: str) -> str:
    s = outcome.suite
    v = machine["versions"]
    lines = [f"# Benchmark report: `{s.name}`" + (" (quick)" if s.quick else ""), ""]
    if s.description:
        lines += [s.description.strip(), ""]
    lines += [
        f"- **Command**: `{command}`",
        f"- **Date**: {machine['date']}",
        f"- **Git commit**: `{machine.get('git_commit') or 'unknown (not a git checkout)'}`",
        f"- **Machine (this report)**: {machine['cpu']} ({machine['cpu_count']} logical CPUs), torch threads "
        f"{machine['torch_threads']}, GPU: {machine['gpu'] or 'none'}, device: {machine.get('device')}"
        + (f", load average {'/'.join(map(str, machine['load_average']))} (1/5/15 min)"
           if machine.get("load_average") else ""),
        f"- **Versions**: torch {v['torch']}, torchvision {v['torchvision']}, numpy {v['numpy']}, "
        f"mailnet {v['mailnet']}, Python {machine['python']}",
    ]
    trained_on = machines_summary([r["machine"] for r in outcome.records.values() if r.get("machine")])
    if trained_on:
        lines.append("- **Runs were trained on**: " + trained_on)
    commits = commits_summary([r["machine"] for r in outcome.records.values() if r.get("machine")])
    if commits:
        lines.append("- **Code the runs were trained with**: " + commits)
    read = sources_summary(list(outcome.records.values()))
    if read:
        lines.append("- **Images read from**: " + read)
    if s.expected_wall_time:
        lines.append(f"- **Expected wall time**: {s.expected_wall_time}")
    jobs = outcome.jobs
    lines.append(f"- **Suite**: {len(s.models)} models x {len(s.compositions)} compositions x {len(s.seeds)} seeds "
                 f"= {len(jobs)} runs; base config `{s.base_source}`; seeds {', '.join(map(str, s.seeds))}")
    t = jobs[0].cfg["train"] if jobs else {}
    if t:
        lines.append(f"- **Training**: epochs {t['epochs']}, batch {t['batch_size']}, {t['optimizer']} lr {t['lr']}, "
                     f"schedule {t['schedule']}, select {t['select']}"
                     + (f", max {t['max_steps_per_epoch']} steps/epoch" if t.get("max_steps_per_epoch") else ""))
    subsets = {c.name: jobs[0].cfg["data"].get("subset") for c in s.compositions} if jobs else {}
    if any(subsets.values()):
        lines.append(f"- **Data subsets**: {next(iter(subsets.values()))}")
    if s.attacks:
        a = s.attacks
        opts = dict(a.get("options") or {})
        if "autoattack" in a["names"]:  # its own step count and version, which `steps` above does not set
            from mailnet.attacks.suite import SuiteSettings

            opts.setdefault("aa_steps", SuiteSettings.aa_steps)
            opts.setdefault("aa_version", SuiteSettings.aa_version)
        options = "; ".join(f"{k} {v}" for k, v in sorted(opts.items()))
        lines.append(f"- **Attacks**: {', '.join(a['names'])}; eps {', '.join(a['eps'])}; steps {a['steps']}, "
                     f"restarts {a['restarts']}, EOT {a['eot']} (random models; a deterministic one needs 1 pass), "
                     f"on {a['subset'] or 'all'} test samples per task" + (f"; options: {options}" if options else ""))
    if s.cost:
        c = s.cost
        lines.append(f"- **Cost**: sizes {c['sizes'] or 'as trained'}, {c['threads']} CPU threads, batch {c['batch']}"
                     f", {c['latency_iters']} latency / {c['batch_iters']} batch repetitions (medians)")
    done = len(outcome.records)
    akey = attack_key(s.attacks) if s.attacks else None
    attacked = sum(akey in r.get("attacks", {}) for r in outcome.records.values()) if akey else done
    complete = done == len(jobs) and attacked == done
    lines.append(f"- **Progress**: {done}/{len(jobs)} runs trained" + (f", {attacked} of them attacked" if akey else "")
                 + ("" if complete else " (missing runs and attacks are listed at the end)"))
    spent = compute_spent(list(outcome.records.values()), akey)
    if spent:
        lines.append(f"- **Measured compute**: {spent}")
    lines += [f"- **Note**: {n}" for n in outcome.notes]
    return "\n".join(lines)


def compute_spent(records: list[dict[str, Any]], akey: str | None) -> str:
    """What the stored runs took, from the seconds each record measured (training loop with its evaluation, and the
    suite's attacks), so that a suite's expected wall time can be checked against what it really cost."""
    train = sum(float(r.get("train_seconds") or 0.0) for r in records)
    attack = sum(float(r["attacks"][akey].get("seconds") or 0.0) for r in records
                 if akey and akey in r.get("attacks", {}))
    if not train and not attack:
        return ""
    text = f"{train / 3600:.1f} h of training over {counted(len(records), 'run')}"
    if akey:
        n = sum(akey in r.get("attacks", {}) for r in records)
        text += f", {attack / 3600:.1f} h of attacks over {counted(n, 'run')}"
    return text + " (sum of the seconds stored in the runs' records, whatever the machine and load)"


def commits_summary(machines: list[dict[str, Any]], shown: int = 4) -> str:
    """How many mailnet commits trained the runs, the most frequent first: a long suite spans sessions, and a
    reader should see that its rows come from more than one version of the code (each record names its own)."""
    counts: dict[str, int] = defaultdict(int)
    for m in machines:
        counts[(m.get("git_commit") or "unknown")[:7] + ("+dirty" if str(m.get("git_commit")).endswith("+dirty")
                                                         else "")] += 1
    if not counts:
        return ""
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    listed = ", ".join(f"`{c}` ({n})" for c, n in top[:shown]) + (f", {len(top) - shown} more" if len(top) > shown
                                                                   else "")
    return (f"{counted(len(top), 'commit')} of mailnet ({listed}; runs per commit); each record names its own "
            "(`machine.git_commit`)")


def sources_summary(records: list[dict[str, Any]]) -> str:
    """The files the runs read, with their native size and the size the model saw, and how many runs read each:
    a suite at 128 px fed from 28 px files is upsampled, which the suite's config alone does not show. Records
    from before this field existed are counted as unknown."""
    counts: dict[str, int] = defaultdict(int)
    unknown = 0
    for r in records:
        sources = r.get("data_sources")
        if not sources:
            unknown += 1
            continue
        for d in sources:
            what = d.get("file") or d.get("ident") or "?"
            size, seen = d.get("native_size"), d.get("img_size")
            if size is None or seen is None or size == seen:
                note = f"{size if size is not None else '?'} px"
            else:
                note = f"{size} px, {'upsampled' if size < seen else 'resized'} to {seen} px"
            counts[f"`{what}` ({note})"] += 1
    if not counts:
        return ""
    text = "; ".join(f"{k}: {counted(n, 'run')}" for k, n in sorted(counts.items()))
    return text + (f"; {counted(unknown, 'record')} from before records named their files" if unknown else "")


def machines_summary(machines: list[dict[str, Any]], noun: str = "run") -> str:
    """One entry per machine, with how many records it wrote (runs trained, or costs measured) and the range of its
    1-minute load average when they were stored: the load is what makes timings comparable or not, and one entry
    per record would bury the machine names."""
    runs: dict[str, int] = defaultdict(int)
    loads: dict[str, list[float]] = defaultdict(list)
    for m in machines:
        name = f"{m.get('cpu')} / GPU {m.get('gpu') or 'none'} / device {m.get('device')}"
        runs[name] += 1
        if m.get("load_average"):
            loads[name].append(float(m["load_average"][0]))
    parts = []
    for name in sorted(runs):
        text = f"{name} ({counted(runs[name], noun)}"
        if loads[name]:
            lo, hi = min(loads[name]), max(loads[name])
            text += f", 1-minute load average when stored {lo:.2f}" + (f"-{hi:.2f}" if hi > lo else "")
        parts.append(text + ")")
    return "; ".join(parts)


def accuracy_section(outcome: BenchOutcome) -> str:
    parts = ["## Accuracy (test split; mean ± std over seeds, population std)"]
    for comp, per_model in _records_by(outcome).items():
        recs = [r for rs in per_model.values() for r in rs]
        tasks = _task_names(recs)
        if not tasks:
            parts.append(f"### {comp}\n\n_no finished runs yet_")
            continue
        header = ["model", "seeds"] + [f"{t} {h}" for t in tasks for _, h in ACC_METRICS]
        rows = []
        for model, rs in per_model.items():
            row = [model, str(len(rs))]
            for t in tasks:
                for k, _ in ACC_METRICS:
                    row.append(fmt_ms([r["test"]["tasks"][t][k] for r in rs if t in r["test"]["tasks"]]))
            rows.append(row)
        parts.append(f"### {comp}\n\n{_table(header, rows)}")
    return "\n\n".join(parts)


def robust_cells(per_model: dict[str, list[dict[str, Any]]], akey: str,
                 metric: str = "robust_acc") -> dict[tuple[str, str, str], dict]:
    """(model, attack label, task) -> eps -> robust accuracy per seed, and "clean" -> clean accuracy per seed
    (``metric="robust_bal_acc"``: balanced accuracy, clean and robust, for rows that carry it).
    Clean accuracy is measured once per budget on the same samples, so each seed contributes the mean of those
    (one value): the spread shown beside it is over seeds, not budgets."""
    clean_metric = metric.replace("robust", "clean")
    table: dict[tuple[str, str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for model, rs in per_model.items():
        for r in rs:
            clean: dict[tuple[str, str, str], list[float]] = defaultdict(list)
            for row in _attack_rows(r, akey):
                if row.get(metric) is None and metric != "robust_acc":
                    continue  # a row of an earlier mailnet, which did not measure it
                k = (model, attack_label(row), row["task"])
                table[k][row["eps"]].append(row[metric])
                if row.get(clean_metric) is not None:
                    clean[k].append(row[clean_metric])
            for k, values in clean.items():
                table[k]["clean"].append(float(np.mean(values)))
    return table


def _robust_table(table: dict[tuple[str, str, str], dict], eps: list[str]) -> str:
    header = ["model", "attack", "task", "clean"] + [f"ε={e}" for e in eps]
    rows = [[model, attack, task, fmt_ms(cell.get("clean", []), 3)] + [fmt_ms(cell.get(e, []), 3) for e in eps]
            for (model, attack, task), cell in table.items()]
    return _table(header, rows)


def robustness_section(outcome: BenchOutcome) -> str:
    s = outcome.suite
    if not s.attacks:
        return ""
    akey = attack_key(s.attacks)
    a = s.attacks
    parts = [f"## Robust accuracy (mean ± std over seeds; steps {a['steps']}, restarts {a['restarts']}, "
             f"EOT {a['eot']}, {a['subset'] or 'all'} samples per task)"]
    for comp, per_model in _records_by(outcome).items():
        table = robust_cells(per_model, akey)
        if not table:
            parts.append(f"### {comp}\n\n_no attack results yet_")
            continue
        parts.append(f"### {comp}\n\n{_robust_table(table, a['eps'])}")
        balanced = robust_cells(per_model, akey, "robust_bal_acc")
        if balanced:
            parts.append(f"Balanced accuracy (mean per-class accuracy; answering one class everywhere scores "
                         f"1 / classes, whatever the attack), same attacks:\n\n{_robust_table(balanced, a['eps'])}")
    parts.append(_objective_line(outcome, akey))
    parts.append(_sanity_lines(outcome, akey))
    parts.append(near_constant_line(outcome))
    return "\n\n".join(p for p in parts if p)


def _chance_bal_acc(rec: dict[str, Any], task: str) -> float | None:
    """1 / (number of classes) of ``task``'s head, read from the record's model description (None if absent)."""
    classes = ((rec.get("model_spec") or {}).get("kwargs") or {}).get("num_classes")
    tasks = list(rec["test"]["tasks"])
    if not isinstance(classes, list) or len(classes) != len(tasks):
        return None
    return 1.0 / classes[tasks.index(task)]


def near_constant_line(outcome: BenchOutcome) -> str:
    """Which heads are at chance on the clean test split (mean balanced accuracy within 0.05 of 1 / classes): such a
    head answers (almost) one class, so its robust accuracy is that class's share of the attacked samples, which no
    attack can lower, and must not be read as robustness."""
    found = []
    for comp, per_model in _records_by(outcome).items():
        for model, rs in per_model.items():
            for task in _task_names(rs):
                pairs = [(r["test"]["tasks"][task]["bal_acc"], _chance_bal_acc(r, task)) for r in rs
                         if r["test"]["tasks"].get(task, {}).get("bal_acc") is not None]
                pairs = [(b, c) for b, c in pairs if c is not None]
                if pairs and float(np.mean([b for b, _ in pairs])) <= pairs[0][1] + NEAR_CHANCE_MARGIN:
                    found.append(f"{model} on {comp} / {task} (balanced accuracy {fmt_ms([b for b, _ in pairs], 3)}, "
                                 f"chance {pairs[0][1]:.3f})")
    if not found:
        return ""
    return ("**Heads at chance** (mean test balanced accuracy within "
            f"{NEAR_CHANCE_MARGIN} of 1 / classes): " + "; ".join(found) + ". Such a head answers (almost) one "
            "class, so its robust accuracy is that class's share of the attacked samples, which no attack can lower: "
            "it measures the head's indifference to its input, not robustness.")


def _objective_line(outcome: BenchOutcome, akey: str) -> str:
    """How the gradient attacks treated several heads, when the runs differ or predate per-head attacks: results
    stored before per-head attacks existed (no ``objective`` recorded) summed the loss over heads."""
    summed, per_task = [], []
    for job in outcome.jobs:
        entry = (outcome.records.get(job.key) or {}).get("attacks", {}).get(akey)
        if not entry:
            continue
        (per_task if _objective(entry) == "per-task" else summed).append(job.label)
    if not summed:
        return ""
    return (f"Gradient attacks on {len(summed)} of {len(summed) + len(per_task)} attacked runs summed the loss over "
            "the heads (attacked before each head was attacked on its own, or with `objective: summed`); their rows "
            "are labelled \"(summed loss)\" and kept apart from per-head rows (on rows that count for several tasks "
            "summing overstates robustness somewhat), and on the deterministic ones among them the reference attack "
            "was carried over budgets (labelled so; BENCHMARKS.md, Robustness); `--reattack-summed` measures them "
            "again head by head.")


def _sanity_lines(outcome: BenchOutcome, akey: str) -> str:
    """The attack suite's sanity checks (accuracy -> 0 at large eps, more steps never help, ...), per run."""
    checked, failed = 0, []
    for job in outcome.jobs:
        entry = (outcome.records.get(job.key) or {}).get("attacks", {}).get(akey)
        if not entry or "sanity" not in entry:
            continue
        checked += 1
        failed += [f"`{job.label}`: {f}" for f in entry["sanity"].get("failed", [])]
    if not checked:
        return ""
    if not failed:
        return f"Sanity checks of the attack suite passed for all {checked} attacked runs."
    return (f"**Sanity checks failed** ({len(failed)} in {checked} attacked runs; the robust accuracies above may "
            "overstate robustness):\n\n" + "\n".join(f"- {f}" for f in failed))


def cost_section(outcome: BenchOutcome) -> str:
    if not outcome.suite.cost:
        return ""
    s = outcome.suite.cost
    parts = [f"## Cost ({s['threads']} CPU threads unless a GPU is named; batch {s['batch']} for throughput)"]
    by_comp: dict[str, list] = defaultdict(list)
    for c in outcome.costs:
        by_comp[c.composition].append(c)
    per_epoch = _epoch_seconds(outcome)
    for comp, entries in by_comp.items():
        rows = []
        for c in entries:
            if c.record is None:
                rows.append([c.model, f"{c.size}" if c.size else "-", "-", "-", "-", "-", "-",
                             per_epoch.get((comp, c.model), "-")])
                continue
            r = c.record["cost"]
            size = c.size or (r.get("settings") or {}).get("size") or "-"
            rows.append([c.model, str(size), f"{r['params'] / 1e6:.2f}", f"{r['macs'] / 1e9:.4f}",
                         f"{r['latency_ms']:.2f}", f"{r['forward_samples_per_s']:.1f}",
                         f"{r['train_samples_per_s']:.1f}", per_epoch.get((comp, c.model), "-")])
        header = ["model", "px", "params (M)", "GMACs", "latency b1 (ms)", "inference (samples/s)",
                  "training (samples/s)", "s / epoch (runs)"]
        parts.append(f"### {comp}\n\n{_table(header, rows)}")
    tools = sorted({c.record["cost"].get("tool") for c in outcome.costs if c.record})
    counters = sorted({c.record["cost"].get("counter") for c in outcome.costs if c.record and
                       c.record["cost"].get("counter")})
    if tools or counters:
        parts.append("Measured with " + "; ".join(tools) + (". MACs counted by " + "; ".join(counters)
                                                             if counters else "") + ".")
    # cost records are reused wherever the suite is rebuilt: the timings are the measuring machine's, not the reader's
    measured_on = machines_summary([c.record["machine"] for c in outcome.costs if c.record and c.record.get("machine")],
                                   noun="cost record")
    if measured_on:
        parts.append(f"Timings measured on: {measured_on} (one entry per machine; the numbers of cost records reused "
                     "from the results folder are that machine's, not this report's).")
    return "\n\n".join(parts)


def _epoch_seconds(outcome: BenchOutcome) -> dict[tuple[str, str], str]:
    """Mean wall seconds per training epoch in the actual runs (whatever machine each ran on)."""
    out = {}
    for comp, per_model in _records_by(outcome).items():
        for model, rs in per_model.items():
            secs = [h["seconds"] for r in rs for h in r.get("history", []) if "seconds" in h]
            if secs:
                out[(comp, model)] = f"{np.mean(secs):.1f}"
    return out


def missing_section(outcome: BenchOutcome) -> str:
    """Jobs not trained yet, then jobs trained but not (or only partly) attacked."""
    lines = [f"- `{j.label}` (key `{j.key}`)" for j in outcome.missing()]
    if outcome.suite.attacks:
        akey = attack_key(outcome.suite.attacks)
        for j in outcome.jobs:
            rec = outcome.records.get(j.key)
            if rec is None or akey in rec.get("attacks", {}):
                continue
            units = stored_units(rec, akey)
            stored = f" ({counted(units, 'attack unit')} stored from an unfinished sitting)" if units else ""
            lines.append(f"- `{j.label}` (key `{j.key}`): trained, attack results missing{stored}")
    return "\n".join(["## Missing runs", ""] + lines) if lines else ""


def charts_section(charts: list[str]) -> str:
    if not charts:
        return ""
    return "## Charts\n\n" + "\n\n".join(f"![{Path(c).stem}]({c})" for c in charts)


def build_markdown(outcome: BenchOutcome, machine: dict[str, Any], command: str, charts: list[str]) -> str:
    sections = [header_section(outcome, machine, command), accuracy_section(outcome), robustness_section(outcome),
                cost_section(outcome), charts_section(charts), missing_section(outcome)]
    return "\n\n".join(s for s in sections if s) + "\n"


# ------------------------------------------------------------------------------------------------------ charts


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cost_by(outcome: BenchOutcome) -> dict[tuple[str, str], dict[str, Any]]:
    """(composition, model) -> the cost row at the trained size (the first size measured)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for c in outcome.costs:
        if c.record is not None and (c.composition, c.model) not in out:
            out[(c.composition, c.model)] = c.record["cost"]
    return out


def plot_charts(outcome: BenchOutcome, out_dir: Path) -> list[str]:
    """Write the PNG charts that have data; returns their paths relative to ``out_dir``."""
    plt = _plt()
    charts: list[str] = []
    by = _records_by(outcome)
    comps = [c for c, pm in by.items() if any(pm.values())]
    if not comps:
        return charts
    (out_dir / "charts").mkdir(parents=True, exist_ok=True)
    colour = _model_colours(by)
    costs = _cost_by(outcome)
    for metric, label, name in (("macs", "GMACs (log scale)", "accuracy_vs_macs"),
                                ("latency_ms", "batch-1 latency, ms (log scale)", "accuracy_vs_latency")):
        if not any((c, m) in costs for c in comps for m in by[c]):
            continue
        fig, axes = plt.subplots(1, len(comps), figsize=(5 * len(comps), 4), squeeze=False)
        for ax, comp in zip(axes[0], comps):
            for model, rs in by[comp].items():
                cost = costs.get((comp, model))
                if not rs or cost is None:
                    continue
                x = cost[metric] / (1e9 if metric == "macs" else 1.0)
                m, s, _ = mean_std([_mean_task_acc(r) for r in rs])
                ax.errorbar([x], [m], yerr=[s], fmt="o", capsize=3, label=model, color=colour[model])
                ax.annotate(model, (x, m), textcoords="offset points", xytext=(4, 4), fontsize=8)
            ax.set(xscale="log", xlabel=label, ylabel="test ACC (mean over tasks)", title=comp)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        charts.append(_save(plt, fig, out_dir, name))
    if outcome.suite.attacks:
        path = _plot_robust(plt, outcome, by, comps, out_dir, colour)
        if path:
            charts.append(path)
    charts.append(_plot_curves(plt, by, comps, out_dir, colour))
    return charts


def _model_colours(by) -> dict[str, Any]:
    """A colour per model, the same in every chart and panel, so a model is found at a glance."""
    import matplotlib

    models = list(dict.fromkeys(m for per_model in by.values() for m in per_model))
    cmap = matplotlib.colormaps["tab10" if len(models) <= 10 else "tab20"]
    return {m: cmap(i % cmap.N) for i, m in enumerate(models)}


def _plot_robust(plt, outcome: BenchOutcome, by, comps: list[str], out_dir: Path, colour) -> str | None:
    """Colour = model, line style = attack (its base name, so a legacy "(summed loss)" row keeps its attack's
    style); the legend sits below the panels, where a dozen entries do not hide the curves."""
    from mailnet.bench.suite import eps_value

    a = outcome.suite.attacks
    akey = attack_key(a)
    styles = dict(zip(a["names"], ("-", "--", ":", "-.")))
    fig, axes = plt.subplots(1, len(comps), figsize=(5.5 * len(comps), 6.5), squeeze=False)
    drew = False
    for ax, comp in zip(axes[0], comps):
        for model, rs in by[comp].items():
            attacks = sorted({attack_label(row) for r in rs for row in _attack_rows(r, akey)})
            for attack in attacks:
                xs, ys, es = [], [], []
                for e in ["0"] + a["eps"]:
                    per_seed = []
                    for r in rs:
                        rows = [row for row in _attack_rows(r, akey) if attack_label(row) == attack]
                        vals = ([row["clean_acc"] for row in rows if row.get("clean_acc") is not None] if e == "0"
                                else [row["robust_acc"] for row in rows if row["eps"] == e])
                        if vals:
                            per_seed.append(float(np.mean(vals)))
                    m, s, n = mean_std(per_seed)
                    if n:
                        xs.append(eps_value(e) * 255)
                        ys.append(m)
                        es.append(s)
                if xs:
                    ax.errorbar(xs, ys, yerr=es, marker="o", markersize=4, capsize=3, label=f"{model} {attack}",
                                color=colour[model], linestyle=styles.get(attack.split(" ")[0], "-"))
                    drew = True
        ax.set(xlabel="ε (× 1/255)", ylabel="accuracy (mean over tasks)", title=comp, ylim=(0, 1))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    if not drew:
        plt.close(fig)
        return None
    fig.tight_layout()
    return _save(plt, fig, out_dir, "robust_accuracy_vs_eps")


def _plot_curves(plt, by, comps: list[str], out_dir: Path, colour) -> str:
    fig, axes = plt.subplots(2, len(comps), figsize=(5 * len(comps), 7), squeeze=False)
    for j, comp in enumerate(comps):
        for model, rs in by[comp].items():
            for row, key, ylabel in ((0, "train_loss", "train loss"), (1, "val_mean_acc", "validation ACC (mean)")):
                hist = [r.get("history", []) for r in rs if r.get("history")]
                if not hist:
                    continue
                n = min(len(h) for h in hist)
                ys = np.array([[h[i][key] for i in range(n)] for h in hist], dtype=float)
                epochs = [hist[0][i]["epoch"] for i in range(n)]
                axes[row][j].plot(epochs, ys.mean(axis=0), marker="o", label=model, color=colour[model])
                if len(hist) > 1:
                    axes[row][j].fill_between(epochs, ys.mean(0) - ys.std(0), ys.mean(0) + ys.std(0), alpha=0.2,
                                              color=colour[model])
                axes[row][j].set(xlabel="epoch", ylabel=ylabel, title=comp)
        for row in range(2):
            axes[row][j].grid(alpha=0.3)
            _legend(axes[row][j])
    fig.tight_layout()
    return _save(plt, fig, out_dir, "training_curves")


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _save(plt, fig, out_dir: Path, name: str) -> str:
    from mailnet.utils import atomic_write

    rel = f"charts/{name}.png"
    atomic_write(out_dir / rel, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    return rel


# ------------------------------------------------------------------------------------------------------ writing


def write_report(outcome: BenchOutcome, out_dir: Path, machine: dict[str, Any],
                 command: str) -> tuple[Path, list[str]]:
    """Write ``report.md``, ``results.csv`` and the charts into ``out_dir``; returns the report's path and the
    charts it drew (paths relative to ``out_dir``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    charts = plot_charts(outcome, out_dir)
    write_csv(out_dir / "results.csv", csv_rows(outcome))
    md = build_markdown(outcome, machine, command, charts)
    path = out_dir / "report.md"
    write_text(path, md)
    return path, charts


def update_marked_block(path: Path, block: str) -> None:
    """Replace what lies between the bench markers in ``path`` (appending the markers at the end when absent);
    the rest of the file is left byte for byte as it was."""
    text = path.read_text() if path.is_file() else ""
    b, e = text.find(BEGIN), text.find(END)
    if (b == -1) != (e == -1) or (b != -1 and e < b):
        raise MailnetError(f"{path}: the markers {BEGIN} and {END} must both appear, in that order")
    body = f"{BEGIN}\n{block.strip()}\n{END}"
    if b == -1:
        new = text + ("" if not text or text.endswith("\n") else "\n") + ("\n" if text else "") + body + "\n"
    else:
        new = text[:b] + body + text[e + len(END):]
    write_text(path, new)


def benchmarks_block(outcome: BenchOutcome, machine: dict[str, Any], command: str, report_dir: Path,
                     charts: list[str] | None = None) -> str:
    """The generated part of BENCHMARKS.md: the report's tables one heading level down, and where they came from;
    ``charts``: the published charts' paths relative to that file (see ``publish_charts``), shown as images."""
    md = build_markdown(outcome, machine, command, charts=charts or [])
    demoted = "\n".join(("#" + line) if line.startswith("#") else line for line in md.splitlines())
    commit = machine.get("git_commit") or "unknown"
    where = "" if charts else f" Charts: `{report_dir}/charts/`."
    return (f"_Generated by `{command}` from commit `{commit}` on {machine['date']}; do not edit by hand "
            f"(rerun the command instead).{where}_\n\n{demoted}")


CHART_NAMES = ("accuracy_vs_macs", "accuracy_vs_latency", "robust_accuracy_vs_eps", "training_curves")


def publish_charts(report_dir: Path, charts: list[str], dest: Path, relative_to: Path) -> list[str]:
    """Copy the charts this report drew (``charts``, relative to ``report_dir``) into ``dest`` (a folder that is
    committed, unlike the work folder the report lives in, so that a reader of BENCHMARKS.md sees them) and drop
    the bench charts there that the report no longer draws (other files are left alone); returns their paths
    relative to ``relative_to`` (the folder of the file that shows them)."""
    import os
    import shutil

    from mailnet.utils import atomic_write

    src = [report_dir / c for c in charts]
    dest.mkdir(parents=True, exist_ok=True)
    keep = {c.name for c in src}
    for old in dest.glob("*.png"):
        if old.stem in CHART_NAMES and old.name not in keep:
            old.unlink()
    for c in src:
        atomic_write(dest / c.name, lambda tmp, c=c: shutil.copyfile(c, tmp))
    return [Path(os.path.relpath(dest / c.name, relative_to)).as_posix() for c in src]
