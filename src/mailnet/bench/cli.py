"""What ``mailnet bench`` does with its parsed arguments (kept out of ``mailnet.commands`` so the CLI stays thin)."""
from __future__ import annotations

import argparse
from pathlib import Path

from mailnet.bench.estimate import Pending, estimate_left
from mailnet.bench.runner import BenchOptions, counted, predates_per_head, run_bench, stored_units
from mailnet.bench.store import Store
from mailnet.bench.suite import check_models, load_suite, selected
from mailnet.errors import ConfigError


def default_out(suite_name: str, quick: bool) -> Path:
    return Path("benchmarks") / "work" / (suite_name + ("-quick" if quick else ""))


def run_bench_command(args: argparse.Namespace, command: str) -> int:
    from mailnet.environment import machine_info
    from mailnet.bench.report import benchmarks_block, publish_charts, update_marked_block, write_report
    from mailnet.engine.trainer import resolve_device

    suite = load_suite(args.suite, quick=args.quick)
    out = Path(args.out) if args.out else default_out(suite.name, args.quick)
    save = (suite.save_results and not args.quick) if args.save_results is None else bool(args.save_results)
    results_dir = Path(args.results_dir) if args.results_dir else None
    only = list(args.only)
    jobs = suite.jobs()
    chosen = [j for j in jobs if selected(j.label, only)]
    if not chosen:
        raise ConfigError(f"--only {' '.join(only)}: matches none of the suite's runs "
                          f"(labels look like {jobs[0].label})")
    if not args.report_only:
        check_models(chosen, str(suite.path))  # a kwargs typo shows now, also under --list, not hours later
        for line in data_notes(chosen, args.data_root):
            print(f"note: {line}", flush=True)
    if args.list:
        from mailnet.bench.store import index_runs

        imported = index_runs([Path(d) for d in args.import_runs])
        return _list(suite, chosen, Store(out, results_dir, False, imported=imported))
    device = resolve_device(args.device).type  # fail now on a bad --device, not after the first job
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads: must be at least 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    opts = BenchOptions(out=out, device=args.device, data_root=args.data_root, results_dir=results_dir,
                        save_results=save, report_only=args.report_only, verbose=args.verbose,
                        progress=not args.no_progress, import_runs=[Path(d) for d in args.import_runs],
                        only=only, reattack_summed=args.reattack_summed)
    print(f"bench {suite.name}{' (quick)' if args.quick else ''}: {len(jobs)} runs"
          + (f" ({len(chosen)} selected by --only)" if args.only else "") + f" -> {out}"
          + (f"; records saved to {results_dir}" if save else ""), flush=True)
    outcome = run_bench(suite, opts)
    machine = machine_info(device)
    report, drawn = write_report(outcome, out, machine, command)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(outcome.counts.items()))
    print(f"report: {report} (+ {out / 'results.csv'}, {out / 'charts'}/); {counts}")
    if args.update_benchmarks:
        target = Path(args.update_benchmarks)
        default = target.parent / "benchmarks" / "charts" / (suite.name + ("-quick" if args.quick else ""))
        charts_dir = Path(args.charts_dir) if args.charts_dir else default
        charts = publish_charts(out, drawn, charts_dir, relative_to=target.parent)
        update_marked_block(target, benchmarks_block(outcome, machine, command, out, charts))
        print(f"updated the generated block of {target} (charts in {charts_dir})")
    return 0


def data_notes(jobs: list, data_root: str | None) -> list[str]:
    """Per composition, the modalities its runs would read upsampled from smaller files (see upsampling_notes)."""
    from mailnet.data.build import upsampling_notes

    notes: dict[str, None] = {}
    for job in jobs:
        for note in upsampling_notes(job.cfg["data"], data_root):
            notes[f"{job.composition.name}: {note}, so its runs would not be what their size promises "
                  "(`mailnet data download FLAG --size N` gets the files)"] = None
    return list(notes)


def _list(suite, chosen: list, store: Store) -> int:
    """One line per selected run with what is stored for it, then the estimated time left for those runs."""
    from mailnet.bench.suite import attack_key
    from mailnet.engine import rundir

    akey = attack_key(suite.attacks) if suite.attacks else None
    pending, records = [], []
    for job in chosen:
        rec, where = store.find_record(job.key)
        run = store.run_dir(job.key)
        records += [rec] if rec is not None else []
        to_attack = akey is not None and (rec is None or akey not in rec.get("attacks", {}))
        if rec is None or to_attack:
            partial = (rec or {}).get("attacks_partial", {}).get(akey) or {}
            pending.append(Pending(job.composition.name, job.model.label, train=not rundir.is_finished(run),
                                   attack=to_attack, attack_done_s=float(partial.get("seconds") or 0.0)))
        if rec is not None and akey is not None and akey not in rec.get("attacks", {}):
            units = stored_units(rec, akey)
            done = f"partly done ({counted(units, 'unit')})" if units else "to do"
            status = f"trained, attack {done} ({where})"
        elif rec is not None and akey is not None and predates_per_head(rec["attacks"][akey]):
            status = f"done, attacked with the loss summed over heads (--reattack-summed redoes it) ({where})"
        else:
            status = (f"done ({where})" if rec is not None else "finished run" if rundir.is_finished(run)
                      else "partial run" if run.exists() else "to do")
        print(f"{job.key}  {job.label:<48} {status}")
    print(estimate_left(pending, records, akey))
    if suite.expected_wall_time:
        print(f"the suite's own estimate for all of it: {suite.expected_wall_time}")
    return 0
