"""Shared fixtures: the real MedMNIST data root, and one torch thread: tests use tiny models, where a second
OpenMP thread only adds contention (100x slower on a loaded 2-core machine)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
REAL_FILES = ("pneumoniamnist/pneumoniamnist.npz", "breastmnist/breastmnist.npz", "retinamnist/retinamnist.npz")


def _real_data_root() -> Path:
    env = os.environ.get("MAILNET_DATA")
    return Path(env) if env else (REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The folder holding the three real datasets (``$MAILNET_DATA`` or ``../shared/data``); skip when absent."""
    root = _real_data_root()
    missing = [f for f in REAL_FILES if not (root / f).is_file() and not (root / Path(f).name).is_file()]
    if missing:
        pytest.skip(f"real MedMNIST data not found under {root} (missing {', '.join(missing)}); set MAILNET_DATA")
    return root


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else {}


@pytest.fixture(autouse=True)
def repository_results_untouched():
    """No test may write into the repository's committed results: a bench test that forgets ``--results-dir``
    would otherwise add a tiny run's record to ``benchmarks/results`` (the suite's default) unnoticed."""
    results = REPO / "benchmarks" / "results"
    before = _tree(results)
    yield
    after = _tree(results)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"the test wrote into {results}: {', '.join(changed[:5])}"
