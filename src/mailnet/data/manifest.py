"""Reading a saved split/pairing manifest back, and checking it against the data it is applied to."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from mailnet.data.compose import MANIFEST_FORMAT, MANIFEST_VERSION
from mailnet.data.sources.base import SPLITS
from mailnet.errors import DataError


def load_manifest(path: str | os.PathLike) -> dict:
    """Read a manifest written by ``MultimodalData.save_manifest``; malformed files are one-line DataErrors."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data manifest not found")
    try:
        with open(path) as f:
            m = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: unreadable data manifest ({type(e).__name__}: {e})") from None
    check_manifest(m, where=str(path))
    return m


def check_manifest(m: object, *, where: str = "manifest") -> None:
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT:
        raise DataError(f"{where}: not a mailnet data manifest (format must be {MANIFEST_FORMAT!r})")
    if m.get("version") != MANIFEST_VERSION:
        raise DataError(f"{where}: unsupported manifest version {m.get('version')!r} (expected {MANIFEST_VERSION})")
    for k in ("mode", "seed", "equalize", "modalities"):
        if k not in m:
            raise DataError(f"{where}: missing key {k!r}")
    if not isinstance(m["modalities"], list) or not m["modalities"]:
        raise DataError(f"{where}: 'modalities' must be a non-empty list")
    for k in ("seed", "split_seed"):
        if k in m and (isinstance(m[k], bool) or not isinstance(m[k], int)):
            raise DataError(f"{where}: {k!r} must be an integer, got {m[k]!r}")
    for i, entry in enumerate(m["modalities"]):
        splits = entry.get("splits") if isinstance(entry, dict) else None
        if not isinstance(splits, dict):
            raise DataError(f"{where}: modalities[{i}] must be a mapping with a 'splits' mapping")
        for split, rec in splits.items():
            idx = rec.get("indices") if isinstance(rec, dict) else None
            if not isinstance(idx, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in idx):
                raise DataError(f"{where}: modalities[{i}].splits.{split}.indices must be a list of integers")


def manifest_splits(m: dict, modality: int, name: str, pools: dict[str, int], where: str = "manifest",
                    fingerprint=None) -> dict[str, tuple[str, np.ndarray]]:
    """The recorded splits of one modality, checked against the pools its source really has."""
    mods = m["modalities"]
    if modality >= len(mods):
        raise DataError(f"{where}: has {len(mods)} modalities, the config has more (no entry for {name!r})")
    entry = mods[modality]
    if entry.get("name") != name:
        raise DataError(f"{where}: modality {modality} is {entry.get('name')!r} in the manifest but {name!r} in the config")
    out: dict[str, tuple[str, np.ndarray]] = {}
    for split in SPLITS:
        rec = entry.get("splits", {}).get(split)
        if not isinstance(rec, dict) or "pool" not in rec or "indices" not in rec:
            raise DataError(f"{where}: modality {name!r} has no {split!r} split record")
        pool = rec["pool"]
        if pool not in pools:
            raise DataError(f"{where}: modality {name!r} split {split!r} reads pool {pool!r}, which the data lacks "
                            f"(has {', '.join(pools)})")
        idx = np.asarray(rec["indices"], dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= pools[pool]):
            raise DataError(f"{where}: modality {name!r} split {split!r}: index {int(idx.max())} out of range for "
                            f"pool {pool!r} of {pools[pool]} samples (different data?)")
        out[split] = (pool, idx)
    recorded = entry.get("fingerprints") or {}
    if fingerprint is not None:
        for pool, digest in recorded.items():
            if pool in pools and fingerprint(pool) != digest:
                raise DataError(f"{where}: modality {name!r} pool {pool!r} differs from the data the manifest was "
                                "written for (labels or file list changed)")
    return out
