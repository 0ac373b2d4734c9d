"""Fetch MedMNIST files through the ``medmnist`` package (it checks the official MD5), when the network allows."""
from __future__ import annotations

import os
from pathlib import Path

from mailnet.errors import DataError


def download_medmnist(flag: str, size: int, root: str | os.PathLike) -> Path:
    """Download ``{flag}[_{size}].npz`` into ``root/{flag}/`` (the shared layout) and return its path."""
    from mailnet.data.sources.medmnist_npz import MEDMNIST_SIZES, check_flag, download_url, find_npz, npz_name

    meta = check_flag(flag)
    if size not in MEDMNIST_SIZES:
        raise DataError(f"{flag}: MedMNIST size must be one of {MEDMNIST_SIZES}, got {size}")
    have = find_npz(root, flag, size)
    if have is not None:
        return have
    target_dir = Path(root) / flag
    created = not target_dir.exists()
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create {target_dir}: {e.strerror or e}") from None
    import medmnist

    cls = getattr(medmnist, meta["python_class"])
    try:
        cls(split="test", root=str(target_dir), size=size, download=True)
    except Exception as e:  # medmnist raises RuntimeError with a multi-line text; keep one line
        partial = target_dir / npz_name(flag, size)
        if partial.exists():
            partial.unlink()
        if created and target_dir.is_dir() and not any(target_dir.iterdir()):
            target_dir.rmdir()
        cause = e.__context__ or e.__cause__ or e  # medmnist hides the network error behind a generic text
        first = " ".join(str(cause).split())[:160]
        raise DataError(
            f"download of {npz_name(flag, size)} failed ({type(cause).__name__}: {first}); "
            f"fetch {download_url(flag, size)} by hand into {target_dir}"
        ) from None
    path = find_npz(root, flag, size)
    if path is None:
        raise DataError(f"download of {npz_name(flag, size)} reported success but no file is in {target_dir}")
    return path
