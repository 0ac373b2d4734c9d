"""Run a suite's jobs, reusing everything already finished, with one progress bar over the whole suite.

Each job is: find its record (output folder, then the shared results folder) -> else reuse, resume or start its
run directory -> attack its best checkpoint -> profile its model once per (model, composition). A record is written
the moment a stage finishes, so an interrupted suite loses at most the stage in flight; rerunning continues there.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mailnet.bench import stages
from mailnet.bench.stages import AttackSuiteMissing
from mailnet.bench.hashing import stable_hash
from mailnet.bench.store import Store
from mailnet.bench.suite import Job, Suite, attack_key, selected
from mailnet.engine import rundir


@dataclass
class BenchOptions:
    out: Path
    device: str = "auto"
    data_root: str | None = None
    results_dir: Path | None = Path("benchmarks/results")
    save_results: bool = False
    report_only: bool = False
    verbose: bool = False  # the trainer's own per-epoch output
    progress: bool = True
    import_runs: list[Path] = field(default_factory=list)  # folders of finished runs trained outside the bench
    # glob patterns on job labels (composition/model/seedN): only those jobs run, the rest are only looked up, so
    # a suite too long for one sitting is completed piece by piece and every report still covers all of it
    only: list[str] = field(default_factory=list)
    # attack again the selected runs whose stored attack results predate per-head attacks (see predates_per_head)
    reattack_summed: bool = False

    def runs(self, job: Job) -> bool:
        return selected(job.label, self.only)


@dataclass
class CostEntry:
    composition: str
    model: str
    size: int | None
    key: str | None
    record: dict[str, Any] | None


@dataclass
class BenchOutcome:
    """What the report is built from: every job with its record (None when missing) and every cost entry."""

    suite: Suite
    jobs: list[Job]
    records: dict[str, dict[str, Any]]
    costs: list[CostEntry]
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def missing(self) -> list[Job]:
        return [j for j in self.jobs if j.key not in self.records]


def run_bench(suite: Suite, opts: BenchOptions) -> BenchOutcome:
    """Run (or, with ``report_only``, only collect) every job of ``suite``."""
    from mailnet.bench.store import index_runs

    store = Store(opts.out, opts.results_dir, opts.save_results, imported=index_runs(opts.import_runs))
    jobs = suite.jobs()
    device = _device_kind(opts.device)
    outcome = BenchOutcome(suite=suite, jobs=jobs, records={}, costs=[], counts={})
    pairs = list(dict.fromkeys((j.composition.name, j.model.label) for j in jobs))
    sizes = (suite.cost or {}).get("sizes") or [None]
    n_cost = len(pairs) * len(sizes) if suite.cost else 0
    total = len(jobs) * (2 if suite.attacks else 1) + n_cost
    bar = _bar(total, opts.progress and not opts.report_only, suite.name)
    state = {"attacks_available": True}
    costed: set[tuple[str, str]] = set()
    look_only = replace(opts, report_only=True)
    try:
        for job in jobs:
            o = opts if opts.runs(job) else look_only
            rec = _train_unit(job, store, o, outcome, bar)
            if suite.attacks:
                rec = _attack_unit(job, rec, store, o, outcome, bar, state) if rec is not None else rec
            pair = (job.composition.name, job.model.label)
            if suite.cost and pair not in costed and rec is not None and rec.get("model_spec"):
                costed.add(pair)
                for size in sizes:
                    outcome.costs.append(_cost_unit(pair, size, rec, store, o, device, outcome, bar))
        for pair in pairs:  # pairs with no finished job at all (report-only, or a failed start)
            if suite.cost and pair not in costed:
                outcome.costs += [CostEntry(pair[0], pair[1], size, None, None) for size in sizes]
    finally:
        bar.close()
    return outcome


# ------------------------------------------------------------------------------------------------------ units


def _train_unit(job: Job, store: Store, opts: BenchOptions, outcome: BenchOutcome, bar) -> dict[str, Any] | None:
    bar.set_description(f"{job.label} train")
    rec, where = store.find_record(job.key)
    run = store.run_dir(job.key)
    if rec is not None:
        _log(outcome, bar, "reused", job, f"record {where}")
    elif rundir.is_finished(run) and rundir.test_metrics_path(run).is_file():
        rec = _new_record(job, run, outcome, opts, harvested=True)
        store.save_record(rec)
        _log(outcome, bar, "reused", job, f"finished run {run}" + (" (imported)" if job.key in store.imported
                                                                    and run == store.imported[job.key] else ""))
    elif opts.report_only:
        _log(outcome, bar, "missing", job, "not run yet")
    else:
        t0 = time.perf_counter()
        how = stages.train_stage(job, run, device=opts.device, data_root=opts.data_root, verbose=opts.verbose)
        rec = _new_record(job, run, outcome, opts)
        store.save_record(rec)
        mean_acc = rec["test"].get("mean_acc")
        _log(outcome, bar, how, job, f"{time.perf_counter() - t0:.1f}s, test mean ACC {mean_acc:.4f} -> {run}")
    if rec is not None:
        outcome.records[job.key] = rec
        _note_other_files(job, rec, opts, outcome, bar)
        _note_other_architecture(job, rec, outcome, bar)
    bar.update(1)
    return rec


def _note_other_files(job: Job, rec: dict[str, Any], opts: BenchOptions, outcome: BenchOutcome, bar) -> None:
    """A record is found by its config's hash, and the config names a MedMNIST flag and a size, not the file: if
    the data root now holds another file for it (a 128 px file added after 28 px ones were upsampled), the reused
    record was not measured on what a fresh run would read. Say so in the log and the report (nothing is retrained:
    records are expensive, and the choice is the user's)."""
    from mailnet.data.build import medmnist_files
    from mailnet.errors import MailnetError

    recorded = {d.get("modality"): (d.get("file"), d.get("native_size")) for d in rec.get("data_sources") or []
                if d.get("kind") == "medmnist"}
    if not recorded:
        return
    try:
        now = medmnist_files(job.cfg["data"], opts.data_root)
    except (MailnetError, OSError, KeyError, TypeError, ValueError):
        return  # no readable data root here (a report built on another machine): nothing to compare
    differ = [f"{m}: {recorded[m][0]} ({recorded[m][1]} px), now {f} ({size} px)" for m, (f, size) in now.items()
              if m in recorded and recorded[m] != (f, size)]
    if differ:
        note = (f"{job.label}: its stored record read other files than this data root would give now ("
                f"{'; '.join(differ)}); it was reused: train it again (a fresh --out, without its stored record) "
                "to measure it on the new files")
        outcome.notes.append(note)
        bar.write(f"[note] {note}")


def _note_other_architecture(job: Job, rec: dict[str, Any], outcome: BenchOutcome, bar) -> None:
    """A record is found by its config's hash, and the config names only the model arguments the user set: if a
    default of the model's builder changed since the record's run (say Robust-MAIL's ``rpf_fraction``), a fresh run
    would train another model. The run's checkpoint wrote out every argument (``model_spec``), so compare (records
    from before that have only the arguments that were set, and cannot be checked)."""
    from mailnet.models.registry import architecture

    spec = rec.get("model_spec") or {}
    stored = spec.get("kwargs")
    if not isinstance(stored, dict) or spec.get("name") != job.cfg["model"]["name"]:
        return
    from_data = {k: stored[k] for k in ("in_chans", "num_classes", "img_size") if k in stored}
    now = architecture(job.cfg["model"]["name"], {**from_data, **(job.cfg["model"].get("kwargs") or {})})
    differ = [f"{k}: {stored[k]!r} in the record, {now[k]!r} now" for k in sorted(now) if k in stored
              and stored[k] != now[k]]
    if differ:
        note = (f"{job.label}: its stored record was trained with other model defaults ({'; '.join(differ)}); it "
                "was reused: train it again (a fresh --out, without its stored record) to measure the current model")
        outcome.notes.append(note)
        bar.write(f"[note] {note}")


def _attack_unit(job: Job, rec: dict[str, Any], store: Store, opts: BenchOptions, outcome: BenchOutcome, bar,
                 state: dict[str, Any]) -> dict[str, Any]:
    settings = outcome.suite.attacks
    akey = attack_key(settings)
    bar.set_description(f"{job.label} attack")
    stored = rec.get("attacks", {}).get(akey)
    redo = stored is not None and opts.reattack_summed and not opts.report_only and predates_per_head(stored)
    if stored is not None and not redo:
        _log(outcome, bar, "reused", job, "attack results")
    elif opts.report_only or not state["attacks_available"]:
        _log(outcome, bar, "missing", job, "attack results")
    else:
        run = store.run_dir(job.key)
        retrained = not rundir.best_path(run).is_file()
        if retrained:  # the record came without weights: train again to attack
            how = stages.train_stage(job, run, device=opts.device, data_root=opts.data_root, verbose=opts.verbose,
                                     need_weights=True)
            _log(outcome, bar, how, job, "weights needed for the attack (the stored record has none)")
        rec = _same_weights_or_new_record(job, rec, run, store, opts, outcome, bar, retrained)
        # units finished in an earlier sitting on these very weights are kept (long attacks of random models span
        # sittings); progress is stored after every unit, so an interrupt loses at most the unit in flight
        partial = rec.get("attacks_partial", {}).get(akey) or {}
        same = partial.get("weights_sha256") == rec["weights_sha256"]
        done, before = (partial.get("records"), float(partial.get("seconds", 0.0))) if same else (None, 0.0)
        if done:
            _log(outcome, bar, "resuming", job, f"{counted(stored_units(rec, akey), 'attack unit')} finished in an "
                 "earlier sitting on these weights")
        t0 = time.perf_counter()

        def keep(records: list[dict]) -> None:
            rec.setdefault("attacks_partial", {})[akey] = {
                "weights_sha256": rec["weights_sha256"], "records": records,
                "seconds": before + time.perf_counter() - t0}
            store.save_record(rec)

        try:
            result = stages.attack_stage(run, settings, device=opts.device, data_root=opts.data_root, done=done,
                                         on_unit=keep)
        except AttackSuiteMissing as e:
            state["attacks_available"] = False
            outcome.notes.append(f"attacks skipped: {e}")
            _log(outcome, bar, "skipped", job, f"attacks ({e})")
        else:
            result["seconds"] = before + time.perf_counter() - t0
            rec.setdefault("attacks", {})[akey] = {"settings": settings, **result}
            rec.get("attacks_partial", {}).pop(akey, None)
            if not rec.get("attacks_partial"):
                rec.pop("attacks_partial", None)
            store.save_record(rec)
            _log(outcome, bar, "re-attacked" if redo else "attacked", job, f"{result['seconds']:.1f}s")
    bar.update(1)
    return rec


def predates_per_head(entry: dict[str, Any]) -> bool:
    """Whether a stored attack entry was measured before each head was attacked on its own (commit 4deef86): such
    entries record no ``objective``; their gradient attacks summed the loss over the heads and, on deterministic
    models, their reference attack was carried over budgets."""
    return "objective" not in (entry.get("suite_settings") or {})


def counted(n: int, noun: str) -> str:
    """``n`` and the noun, plural unless ``n`` is 1 ("1 attack unit", "3 attack units")."""
    return f"{n} {noun}{'s' * (n != 1)}"


def stored_units(rec: dict[str, Any], akey: str) -> int:
    """How many attack units (attack x budget, or a probe) of the attack settings ``akey`` an unfinished sitting
    stored in the record (0 when none)."""
    partial = rec.get("attacks_partial", {}).get(akey) or {}
    return len({r.get("unit") for r in partial.get("records", [])})


def _same_weights_or_new_record(job: Job, rec: dict[str, Any], run: Path, store: Store, opts: BenchOptions,
                                outcome: BenchOutcome, bar, retrained: bool) -> dict[str, Any]:
    """``rec`` when the run's weights (``retrained``: trained again for the attack) are the ones its metrics came
    from, else the run's own new record.

    Attack results are stored beside the record's clean metrics, so they must describe the same weights. Training
    is deterministic for a given seed, machine and thread count, but not across them; the check is the weights'
    fingerprint, or for a record stored before fingerprints the test metrics, which any change of weights moves.
    """
    new = _new_record(job, run, outcome, opts)
    old_print = rec.get("weights_sha256")
    same = old_print == new["weights_sha256"] if old_print else rec.get("test") == new["test"]
    if same:
        if not old_print:
            rec["weights_sha256"] = new["weights_sha256"]
            store.save_record(rec)
        if retrained:
            _log(outcome, bar, "checked", job, "the weights trained again are the recorded run's "
                 + ("(same fingerprint)" if old_print else "(same test metrics)"))
        return rec
    store.save_record(new)
    outcome.records[job.key] = new
    outcome.notes.append(f"{job.label}: the weights found or trained again for the attack differ from the stored "
                         "record's; the record (and its attack results) was replaced by the new run's")
    was, now = (r.get("test", {}).get("mean_acc", float("nan")) for r in (rec, new))
    _log(outcome, bar, "replaced", job, "the weights " + ("trained again " if retrained else "of the run folder ")
         + "differ from the stored record's "
         f"({'fingerprint' if old_print else 'test metrics'}): its record is replaced by the new run's, "
         f"test mean ACC {was:.4f} -> {now:.4f}")
    return new


def _cost_unit(pair: tuple[str, str], size: int | None, rec: dict[str, Any], store: Store, opts: BenchOptions,
               device: str, outcome: BenchOutcome, bar) -> CostEntry:
    comp, model = pair
    settings = outcome.suite.cost
    key = stable_hash({"spec": rec["model_spec"], "size": size, "settings": settings, "device": device})
    bar.set_description(f"{comp}/{model} cost")
    cost, where = store.find_cost(key)
    label = f"{comp}/{model} cost" + (f" @{size}px" if size else "")
    if cost is not None:
        from mailnet.environment import cpu_model

        measured_on, here = (cost.get("machine") or {}).get("cpu"), cpu_model()
        elsewhere = f"; measured on {measured_on}, not this machine's {here}: delete it to measure here" \
            if device == "cpu" and measured_on and measured_on != here else ""
        _log(outcome, bar, "reused", label, f"cost record {where}{elsewhere}")
    elif opts.report_only:
        _log(outcome, bar, "missing", label, "cost not measured yet")
    else:
        t0 = time.perf_counter()
        from mailnet.environment import machine_info

        row = stages.cost_stage(rec["model_spec"], size, settings, device)
        cost = {"key": key, "composition": comp, "model": model, "size": size, "spec": rec["model_spec"],
                "cost": row, "machine": machine_info(device)}
        store.save_cost(cost)
        _log(outcome, bar, "profiled", label, f"{time.perf_counter() - t0:.1f}s")
    bar.update(1)
    return CostEntry(comp, model, size, key, cost)


# ------------------------------------------------------------------------------------------------------ helpers


def _new_record(job: Job, run: Path, outcome: BenchOutcome, opts: BenchOptions,
                harvested: bool = False) -> dict[str, Any]:
    """``harvested``: a run finished before this bench looked at it (another process, machine or day), credited to
    the machine its own environment record names for its last sitting, not to this one."""
    from mailnet.environment import machine_info

    rec = stages.job_record(job, run, outcome.suite.name)
    trained_on = rundir.sittings(run)[-1:] if harvested else []
    rec["machine"] = ({**trained_on[0], "recorded_by": "run directory"} if trained_on
                      else machine_info(_device_kind(opts.device)))
    return rec


def _device_kind(device: str) -> str:
    from mailnet.engine.trainer import resolve_device

    return resolve_device(device).type


def _log(outcome: BenchOutcome, bar, how: str, job: Job | str, detail: str) -> None:
    outcome.counts[how] = outcome.counts.get(how, 0) + 1
    label = job.label if isinstance(job, Job) else job
    bar.write(f"[{how}] {label}: {detail}")


class _PlainBar:
    """The progress interface without a bar (report-only, or --no-progress): lines still go to stdout."""

    def set_description(self, _: str) -> None: ...

    def update(self, _: int) -> None: ...

    def write(self, line: str) -> None:
        print(line, flush=True)

    def close(self) -> None: ...


class _TqdmBar:
    def __init__(self, total: int, name: str):
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, desc=name, unit="step", dynamic_ncols=True, file=sys.stderr)

    def set_description(self, text: str) -> None:
        self._bar.set_description(text)

    def update(self, n: int) -> None:
        self._bar.update(n)

    def write(self, line: str) -> None:
        self._bar.write(line, file=sys.stdout)

    def close(self) -> None:
        self._bar.close()


def _bar(total: int, enabled: bool, name: str):
    return _TqdmBar(total, name) if enabled else _PlainBar()
