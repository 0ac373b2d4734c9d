"""Where finished results live, so that a suite can be stopped and continued, here or on another machine.

Layout under the bench output folder ``OUT``::

    OUT/runs/<key>/            the training run directory (weights, history, plots) of the job with hash <key>
    OUT/records/<key>.json     the job's small result record (test metrics, history, attack results)
    OUT/cost/<key>.json        one cost measurement (model spec x input shape x profile settings)

and, when results are saved for committing, the same records as ``RESULTS/<key>.json`` and
``RESULTS/cost-<key>.json`` (default ``benchmarks/results``). Records never hold weights.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mailnet.utils import write_json

RECORD_SCHEMA = 1


class Store:
    """Finds and saves job records and cost records in the output folder and the shared results folder."""

    def __init__(self, out: Path, results_dir: Path | None, save_results: bool,
                 imported: dict[str, Path] | None = None):
        self.out = Path(out)
        self.results_dir = Path(results_dir) if results_dir is not None else None
        self.save_results = save_results and self.results_dir is not None
        self.imported = dict(imported or {})

    def run_dir(self, key: str) -> Path:
        """The job's own run directory, or a finished run with the same resolved config found by ``index_runs``."""
        own = self.out / "runs" / key
        return self.imported[key] if key in self.imported and not own.exists() else own

    def _record_paths(self, key: str) -> list[Path]:
        paths = [self.out / "records" / f"{key}.json"]
        if self.results_dir is not None:
            paths.append(self.results_dir / f"{key}.json")
        return paths

    def _cost_paths(self, key: str) -> list[Path]:
        paths = [self.out / "cost" / f"{key}.json"]
        if self.results_dir is not None:
            paths.append(self.results_dir / f"cost-{key}.json")
        return paths

    def find_record(self, key: str) -> tuple[dict[str, Any] | None, Path | None]:
        """The readable record for ``key``: the output folder's, unless the results folder holds a further record of
        the same weights (more finished attack settings, or more stored attack units): a stale copy in the output
        folder (the run went on in another sitting, which committed its results) must not hide, and later
        overwrite, it. Records of other weights (a run trained again and replaced) keep the output folder's."""
        found = []
        for p in self._record_paths(key):
            rec = _read(p)
            if rec is not None and rec.get("key") == key and rec.get("schema") == RECORD_SCHEMA:
                found.append((rec, p))
        if not found:
            return None, None
        first, rest = found[0], found[1:]
        for rec, p in rest:
            same = rec.get("weights_sha256") == first[0].get("weights_sha256") or not first[0].get("weights_sha256")
            if same and _progress(rec) > _progress(first[0]):
                return rec, p
        return first

    def save_record(self, rec: dict[str, Any]) -> None:
        rec["schema"] = RECORD_SCHEMA
        write_json(self._record_paths(rec["key"])[0], rec)
        if self.save_results:
            write_json(self.results_dir / f"{rec['key']}.json", rec)

    def find_cost(self, key: str) -> tuple[dict[str, Any] | None, Path | None]:
        for p in self._cost_paths(key):
            rec = _read(p)
            if rec is not None and rec.get("key") == key:
                return rec, p
        return None, None

    def save_cost(self, rec: dict[str, Any]) -> None:
        write_json(self._cost_paths(rec["key"])[0], rec)
        if self.save_results:
            write_json(self.results_dir / f"cost-{rec['key']}.json", rec)


def index_runs(roots: list[Path]) -> dict[str, Path]:
    """Finished run directories under ``roots`` (e.g. from ``mailnet train``), keyed by their config's hash, so a
    bench reuses runs trained outside it when their resolved config is exactly the job's."""
    import yaml

    from mailnet.bench.hashing import config_hash
    from mailnet.config import load_yaml
    from mailnet.engine import rundir
    from mailnet.errors import MailnetError

    found: dict[str, Path] = {}
    for root in roots:
        if not Path(root).is_dir():
            raise MailnetError(f"--import-runs {root}: no such folder")
        for cfg_path in sorted(Path(root).rglob("config.yaml")):
            run = cfg_path.parent
            if not (rundir.is_finished(run) and rundir.test_metrics_path(run).is_file()):
                continue
            try:
                cfg = load_yaml(cfg_path.read_text())
            except (OSError, yaml.YAMLError):
                continue
            if isinstance(cfg, dict):
                found.setdefault(config_hash(cfg), run)
    return found


def _read(p: Path) -> dict[str, Any] | None:
    """A record, or None when absent or unreadable (a half-copied file is treated as missing, not fatal)."""
    if not p.is_file():
        return None
    try:
        obj = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _progress(rec: dict[str, Any]) -> tuple[int, int]:
    """How far a record's attacks got: finished attack settings, then stored units of unfinished ones."""
    units = sum(len(v.get("records", [])) for v in (rec.get("attacks_partial") or {}).values())
    return len(rec.get("attacks") or {}), units
