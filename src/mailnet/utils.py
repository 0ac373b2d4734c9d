"""Small helpers shared by the whole package: atomic file writes and seeding."""
from __future__ import annotations

import json
import os
import random
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch


def _read_umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it; put it straight back (once, at import)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file. A path that
    cannot be written (no permission, a file where a folder should be, a folder where the file should be) is one
    ``MailnetError`` line naming it."""
    from mailnet.errors import MailnetError

    path = Path(path)
    if path.is_dir():
        raise MailnetError(f"{path}: is a folder; give a file path to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise MailnetError(f"{path}: cannot write here ({e.strerror or type(e).__name__})") from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it owner-only; results are for whoever may read the folder
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    def _w(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False, default=_json_default)
            f.write("\n")

    atomic_write(path, _w)


def write_text(path: str | os.PathLike, text: str) -> None:
    def _w(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write(path, _w)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch. Deterministic algorithms are not forced: a CPU run is repeatable as it is
    (tests check a resumed run against an uninterrupted one), and on CUDA forcing them would slow training."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@contextmanager
def overridden(slot: list, value: Any) -> Iterator[None]:
    """``slot[0] = value`` inside the block, restored after: the module-level switches that tests and benchmarks
    flip (forcing a fast path on or off) without threading a flag through every call."""
    previous = slot[0]
    slot[0] = value
    try:
        yield
    finally:
        slot[0] = previous
