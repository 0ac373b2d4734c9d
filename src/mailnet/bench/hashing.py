"""Stable content hashes: the key under which a finished run (or measurement) is found again.

Two configs that would produce the same numbers must hash alike on any machine and Python version, so the hash is
taken over canonical JSON (sorted keys, no whitespace); only keys that cannot change a result (the run's display
name and output folder) are left out.
"""
from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from mailnet.config import DEFAULTS

# Bump when the meaning of a stored result changes (e.g. a metric is redefined), so old results are not reused.
SCHEMA = 1
# Top-level config keys that only name or place a run.
EXCLUDED_KEYS: tuple[str, ...] = ("name", "output")
HASH_CHARS = 16
# Keys added after results were first stored. Their default (config.DEFAULTS) reproduces the behaviour from
# before they existed, so a key left at its default is dropped from the hash and stored results stay found.
LATER_KEYS: tuple[tuple[str, ...], ...] = (("train", "noise_warmup"), ("train", "time_limit"), ("model", "init_from"),
                                            ("train", "class_weights"))


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=_default)


def stable_hash(obj: Any, chars: int = HASH_CHARS) -> str:
    """A short hex digest of ``obj``'s canonical JSON."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:chars]


def result_relevant(cfg: dict[str, Any]) -> dict[str, Any]:
    """The resolved config without the keys that do not change results (seed included, it does)."""
    out = copy.deepcopy(cfg)
    for key in EXCLUDED_KEYS:
        out.pop(key, None)
    for path in LATER_KEYS:
        node, default = out, DEFAULTS
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
            default = default[part]
        if isinstance(node, dict) and path[-1] in node and node[path[-1]] == default[path[-1]]:
            del node[path[-1]]
    model = out.get("model")
    if isinstance(model, dict) and isinstance(model.get("init_from"), str):
        from mailnet.engine.init_weights import source_fingerprint

        # the weights a run started from, not the path they were read from (a source retrained in place is
        # another start; the same file named by a relative or an absolute path is the same one)
        fingerprint = source_fingerprint(model["init_from"])
        if fingerprint is not None:
            model["init_from"] = f"weights:{fingerprint}"
    return out


def config_hash(cfg: dict[str, Any]) -> str:
    """The key of one training run: the resolved config, seed included, name and output dir excluded."""
    return stable_hash({"schema": SCHEMA, "config": result_relevant(cfg)})


def _default(o: Any) -> Any:
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    if isinstance(o, tuple):
        return list(o)
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"cannot hash a value of type {type(o).__name__}")
