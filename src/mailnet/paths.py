"""Where the data lives: ``--data-root``, then the config's ``data.root`` (``build_data`` passes it), then
``$MAILNET_DATA``, then ``../shared/data`` next to the working directory (this project's development layout), then
the medmnist package's default folder (``~/.medmnist``)."""
from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "MAILNET_DATA"


def default_data_roots() -> list[Path]:
    roots: list[Path] = []
    env = os.environ.get(ENV_VAR)
    if env:
        roots.append(Path(env).expanduser())
    roots.append(Path.cwd().parent / "shared" / "data")
    roots.append(Path("~/.medmnist").expanduser())
    return roots


def resolve_data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The first root that exists, or the explicit one as given (its absence is reported by the data source)."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_VAR)
    if env and not Path(env).expanduser().is_dir():  # a set but wrong variable must not be skipped in silence
        from mailnet.errors import DataError

        raise DataError(f"${ENV_VAR}={env}: no such folder (unset it, fix it, or pass --data-root)")
    for root in default_data_roots():
        if root.is_dir():
            return root
    return default_data_roots()[-1]
