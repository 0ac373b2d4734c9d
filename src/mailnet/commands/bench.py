"""``mailnet bench``: train, attack and profile every model x composition x seed of a suite, then write the report.

Finished runs are found again by the hash of their resolved config (in ``OUT/runs`` and in ``--results-dir``), so
an interrupted suite continues where it stopped and a report can be rebuilt from committed results alone.
"""
from __future__ import annotations

import argparse
import shlex


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark suite and write its report", description=__doc__)
    p.add_argument("suite", help="suite file, e.g. benchmarks/quick.yaml")
    p.add_argument("--quick", action="store_true", help="apply the suite's quick: section (smaller, faster)")
    p.add_argument("--out", help="output folder (default: benchmarks/work/SUITE[-quick])")
    p.add_argument("--data-root", help="folder with the datasets (default: the config's data.root, $MAILNET_DATA, "
                                       "../shared/data, ~/.medmnist)")
    p.add_argument("--device", default="auto", help="cpu | cuda | auto (default)")
    p.add_argument("--threads", type=int,
                   help="torch CPU threads for training and attacks (default: torch's; 1 is fastest on a busy machine)")
    p.add_argument("--results-dir", default="benchmarks/results",
                   help="shared folder of finished-run records, read and (with --save-results) written")
    save = p.add_mutually_exclusive_group()
    save.add_argument("--save-results", dest="save_results", action="store_true", default=None,
                      help="write finished-run records to --results-dir (default: the suite's save_results, off with --quick)")
    save.add_argument("--no-save-results", dest="save_results", action="store_false")
    p.add_argument("--import-runs", action="append", default=[], metavar="DIR",
                   help="also reuse finished runs under DIR (e.g. from mailnet train) whose resolved config is a job's "
                        "(repeatable)")
    p.add_argument("--only", action="append", default=[], metavar="PATTERN",
                   help="run only the jobs whose label matches (glob on COMPOSITION/MODEL/seedN, e.g. "
                        "'pneumonia_breast_retina/mail/*'; repeatable); the report still covers the whole suite")
    p.add_argument("--reattack-summed", action="store_true",
                   help="attack again the selected runs whose stored attack results predate per-head attacks (the "
                        "report's '(summed loss)' rows), so that every run is measured the same way; the old results "
                        "stay in the record until the new ones are complete")
    p.add_argument("--report-only", action="store_true", help="run nothing: rebuild the report from finished results")
    p.add_argument("--update-benchmarks", metavar="FILE",
                   help="also rewrite the generated block of FILE (e.g. BENCHMARKS.md) from this report")
    p.add_argument("--charts-dir", metavar="DIR",
                   help="with --update-benchmarks: where the charts shown in FILE are copied (default: "
                        "benchmarks/charts/SUITE beside FILE; commit them with it)")
    p.add_argument("--list", action="store_true",
                   help="list the suite's jobs, their keys and status, and the compute left (estimated from finished "
                        "runs), and stop")
    p.add_argument("--verbose", action="store_true", help="show the trainer's per-epoch output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (status lines only)")
    p.set_defaults(func=run)


def command_line(args: argparse.Namespace) -> str:
    """The command as a user would retype it (the options that were given, in canonical order)."""
    parts = ["mailnet", "bench", args.suite]
    if args.quick:
        parts.append("--quick")
    for opt, value in (("--out", args.out), ("--data-root", args.data_root), ("--results-dir", args.results_dir)):
        if value and not (opt == "--results-dir" and value == "benchmarks/results"):
            parts += [opt, str(value)]
    if args.device != "auto":
        parts += ["--device", args.device]
    if args.threads:
        parts += ["--threads", str(args.threads)]
    if args.save_results is not None:
        parts.append("--save-results" if args.save_results else "--no-save-results")
    for flag in ("reattack_summed", "report_only", "verbose"):
        if getattr(args, flag):
            parts.append("--" + flag.replace("_", "-"))
    for d in args.import_runs:
        parts += ["--import-runs", d]
    for pattern in args.only:
        parts += ["--only", pattern]
    if args.update_benchmarks:
        parts += ["--update-benchmarks", args.update_benchmarks]
    if args.charts_dir:
        parts += ["--charts-dir", args.charts_dir]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    from mailnet.bench.cli import run_bench_command

    return run_bench_command(args, command_line(args))
