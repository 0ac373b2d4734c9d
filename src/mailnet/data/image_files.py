"""Reading single image files (PNG, JPEG, TIFF, ...) into arrays, with one-line errors naming the file."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mailnet.errors import DataError

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm")


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """``(H, W)`` gray or ``(H, W, 3)`` RGB; uint8, or uint16 for 16-bit files. Alpha is dropped, palettes expanded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("L", "RGB"):
                return np.asarray(im).copy()
            if mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(im).astype(np.uint16)
            if mode in ("I", "F"):
                arr = np.asarray(im)
                if mode == "F" and np.isnan(arr).any():
                    raise DataError(f"{path}: image contains NaN")
                lo, hi = float(arr.min()), float(arr.max())
                if mode == "I" and lo >= 0 and hi <= 65535:
                    return arr.astype(np.uint16)
                if mode == "F" and lo >= 0 and hi <= 1:
                    return arr.astype(np.float32)
                raise DataError(f"{path}: {mode}-mode image with values in [{lo:g}, {hi:g}] cannot be scaled to [0, 1]")
            if mode in ("1", "LA", "P;L"):
                return np.asarray(im.convert("L")).copy()
            return np.asarray(im.convert("RGB")).copy()
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: unreadable image file ({type(e).__name__}: {' '.join(str(e).split())})") from None


def probe_image(path: str | os.PathLike) -> tuple[int, tuple[int, int]]:
    """Channels and (H, W) from the header only, so folder scans stay fast; unreadable headers fail here."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            ch = 1 if im.mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F", "LA") else 3
            return ch, (im.height, im.width)
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: unreadable image file ({type(e).__name__}: {' '.join(str(e).split())})") from None


def probe_all(paths: list[Path]) -> set[int]:
    """Every file's header read (an unreadable one fails here, before training); returns the channel counts met,
    so ``channels: keep`` can refuse a mix of grey and colour files instead of following the first file."""
    return {probe_image(p)[0] for p in paths}


class FileImages:
    """A list of image files read lazily per batch (file decoding is cheap next to training at these sizes)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, idx: np.ndarray) -> list[np.ndarray]:
        return [read_image(self.paths[int(i)]) for i in np.asarray(idx).reshape(-1)]

    def undecodable(self, idx: np.ndarray) -> list[str]:
        """The one-line error of every file at ``idx`` whose pixels cannot be decoded (a truncated PNG passes the
        header check that runs when the source is built and fails only here, or when training reaches it)."""
        errors = []
        for i in np.asarray(idx).reshape(-1):
            try:
                read_image(self.paths[int(i)])
            except DataError as e:
                errors.append(str(e))
        return errors

    def names(self) -> list[str]:
        return [p.name if len(p.parts) < 2 else f"{p.parent.name}/{p.name}" for p in self.paths]

    def ids(self, idx: np.ndarray, root: Path | None) -> list[str]:
        """The files at ``idx`` as the user laid them out: relative to ``root`` (a folder source's root, a CSV's
        folder), so a prediction row leads back to its file; a file outside ``root`` keeps its full path."""
        return [_relative_to(self.paths[int(i)], root) for i in np.asarray(idx).reshape(-1)]

    def native(self) -> tuple[int, int | None]:
        """Channels and square size of the first file (None when not square), for the source's description."""
        if not self.paths:
            return 1, None
        ch, (h, w) = probe_image(self.paths[0])
        return ch, (h if h == w else None)


def _relative_to(path: Path, root: Path | None) -> str:
    """``path`` relative to ``root`` in POSIX form when it lies under it (compared as given, then resolved)."""
    if root is not None:
        for p, r in ((path, root), (path.resolve(), root.resolve())):
            try:
                return p.relative_to(r).as_posix()
            except ValueError:
                continue
    return path.as_posix()
