"""``mailnet bench``: one command that trains, attacks and profiles a whole comparison and writes its report.

- ``suite``: parse and validate a suite YAML, expand it into jobs keyed by the hash of their resolved config;
- ``runner``: run or reuse the jobs (interruption-safe) with one progress bar over the suite;
- ``report``: markdown tables, a CSV of every number, PNG charts, and the generated block of BENCHMARKS.md.

Usage::

    mailnet bench benchmarks/quick.yaml                 # smoke test (CI)
    mailnet bench benchmarks/cpu.yaml --quick           # the whole pipeline of a suite on data subsets
    mailnet bench benchmarks/cpu.yaml                   # resumable; records saved to benchmarks/results/
    mailnet bench benchmarks/cpu.yaml --report-only --update-benchmarks BENCHMARKS.md
    mailnet bench benchmarks/cpu.yaml --list            # jobs, their keys, whether they are done, compute left
"""
from mailnet.bench.hashing import config_hash, stable_hash
from mailnet.bench.suite import Job, Suite, load_suite

__all__ = ["Job", "Suite", "config_hash", "load_suite", "stable_hash"]
