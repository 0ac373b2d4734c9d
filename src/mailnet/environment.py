"""Where and with what something ran: CPU, threads, GPU, library versions, date, git commit.

A metric or a timing is only meaningful next to these facts, so they are written into every run directory (one
entry per sitting: a run may be resumed elsewhere), into every bench record and into the report header.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def git_commit(cwd: str | Path | None = None) -> str | None:
    """``git rev-parse HEAD`` of the working directory, with ``+dirty`` when tracked files are modified."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("+dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except ImportError:
        return None
    return str(getattr(mod, "__version__", "unknown"))


def _load_average() -> list[float] | None:
    """1/5/15-minute load averages: timings from a shared, busy machine must say so."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_info(device: str | None = None) -> dict[str, Any]:
    """A JSON-able description of this machine and software stack."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "load_average": _load_average(),
        "device": device,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {m: _version(m) for m in ("torch", "torchvision", "numpy", "mailnet")},
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "git_commit": source_commit(),
    }


def source_commit() -> str | None:
    """The commit of the mailnet source that is running (its own folder's checkout, whatever the working
    directory; None for an installed, non-git copy)."""
    import mailnet

    return git_commit(Path(mailnet.__file__).resolve().parent)


def sitting_info(device: str, world_size: int = 1, resumed: bool = False) -> dict[str, Any]:
    """One training sitting: the machine, the command that started it, the process count, and the commit of the
    mailnet source that ran."""
    info = machine_info(device)
    return {**info, "command": [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else [],
            "world_size": world_size, "resumed": resumed}
