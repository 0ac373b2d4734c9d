"""Small fixtures shared by the data tests: CSV files written as a user would, and the one-line error check."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def one_line(exc: pytest.ExceptionInfo, *needles: str) -> str:
    """The error's message, checked to be one line holding every needle."""
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg
