"""``mailnet bench``: one command that trains, attacks and profiles a whole comparison and writes its report.

- ``suite``: parse and validate a suite YAML, expand it into jobs keyed by the hash of their resolved config;
- ``runner``: run or reuse the jobs (interruption-safe) with one progress bar over the suite;
- ``report``: markdown tables, a CSV of every number, PNG charts, and the generated block of BENCHMARKS.md.
"""
from mailnet.bench.hashing import config_hash, stable_hash
from mailnet.bench.suite import Job, Suite, load_suite

__all__ = ["Job", "Suite", "config_hash", "load_suite", "stable_hash"]
