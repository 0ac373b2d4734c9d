"""The layout of a run directory, in one place::

    RUN_DIR/
      config.yaml              resolved configuration
      manifest.json            exact split indices and pairing seed (reproduce / audit)
      init.json                with model.init_from: the source checkpoint, its fingerprint, what was copied
      environment.json         per sitting (start, each resume): machine, library versions, git commit, command
      metrics.csv, metrics.json per-epoch history
      checkpoints/best.safetensors (+ .json)   best by the selection metric; weights + metadata + partner bank
      checkpoints/last.safetensors (+ .json)   resumable: weights, optimizer, schedule, history
      test_metrics.json        final metrics of the best checkpoint on every modality's full test split
      predictions_test.csv     per task and sample: label, id (file or split[index]), predicted class and class
                               probabilities (p_<class name>)
      plots/*.png              curves, confusion matrices, ROC curves
      FINISHED                 written last
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailnet.errors import MailnetError
from mailnet.utils import write_json, write_text

if TYPE_CHECKING:
    from mailnet.data.types import TaskSpec
    from mailnet.engine.evaluation import SplitPredictions


def config_path(run: Path) -> Path:
    return run / "config.yaml"


def manifest_path(run: Path) -> Path:
    return run / "manifest.json"


def init_path(run: Path) -> Path:
    return run / "init.json"


def environment_path(run: Path) -> Path:
    return run / "environment.json"


def record_sitting(run: Path, sitting: dict[str, Any]) -> None:
    """Append one sitting (``mailnet.environment.sitting_info``) to the run's environment record."""
    import json

    path = environment_path(run)
    try:
        sittings = json.loads(path.read_text()).get("sittings", []) if path.is_file() else []
    except (ValueError, AttributeError):
        sittings = []  # a damaged record is not worth failing a run over: start it again
    write_json(path, {"sittings": [*sittings, sitting]})


def sittings(run: Path) -> list[dict[str, Any]]:
    """The run's recorded sittings, oldest first ([] for runs made before environments were recorded)."""
    import json

    try:
        data = json.loads(environment_path(run).read_text())
    except (OSError, ValueError):
        return []
    return [s for s in data.get("sittings", []) if isinstance(s, dict)] if isinstance(data, dict) else []


def best_path(run: Path) -> Path:
    return run / "checkpoints" / "best.safetensors"


def last_path(run: Path) -> Path:
    return run / "checkpoints" / "last.safetensors"


def test_metrics_path(run: Path) -> Path:
    return run / "test_metrics.json"


def plots_dir(run: Path) -> Path:
    return run / "plots"


def is_finished(run: Path) -> bool:
    return (run / "FINISHED").is_file()


def mark_finished(run: Path) -> None:
    write_text(run / "FINISHED", "")


# What a run directory holds before its first epoch has finished: nothing worth keeping.
NOT_STARTED = {"config.yaml", "manifest.json", "environment.json", "init.json", "checkpoints"}


def never_trained(run: Path) -> bool:
    """True when ``run`` holds at most what is written before the first epoch ends (a run killed in epoch 1, even
    between writing its first best checkpoint and its first last one): starting afresh there loses nothing, and
    there is no checkpoint to resume from."""
    names = {p.name for p in run.iterdir()}
    return names <= NOT_STARTED and not last_path(run).is_file()


def remove_unstarted(run: Path, whole: bool) -> None:
    """Remove what a run wrote before its first epoch was saved (``never_trained``); ``whole``: the folder too."""
    import shutil

    if whole:
        shutil.rmtree(run, ignore_errors=True)
        return
    for name in NOT_STARTED:
        target = run / name
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        elif target.exists():
            target.unlink()


def prepare(run: Path) -> None:
    """Refuse to write over a run: a finished one is kept, an unfinished one is resumed with --resume; one that
    never finished an epoch is started afresh."""
    if run.exists() and any(run.iterdir()) and not never_trained(run):
        hint = "it has finished" if is_finished(run) else "resume it with `mailnet train --resume RUN_DIR`"
        raise MailnetError(f"{run}: run directory is not empty ({hint}); choose another run directory (--run-dir) or delete it")
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)


def write_history(run: Path, history: list[dict[str, Any]]) -> None:
    write_json(run / "metrics.json", history)
    buf = io.StringIO()
    if history:
        w = csv.DictWriter(buf, fieldnames=list(history[0].keys()))
        w.writeheader()
        w.writerows(history)
    write_text(run / "metrics.csv", buf.getvalue())


def save_predictions(run: Path, split: str, tasks: list[TaskSpec], preds: SplitPredictions,
                     ids: list[list[str]] | None = None) -> None:
    """``predictions_SPLIT.csv``, one row per task and sample: ``task, index, label`` (as before, so old readers
    keep working), ``id`` (the sample as the user knows it: ``MultimodalData.sample_ids``; empty when not given),
    ``pred`` (the class the metrics count as predicted) and one probability column per class
    (``probability_columns``)."""
    from mailnet.engine.prediction_table import predicted, probability_cells, probability_columns

    columns = probability_columns(tasks)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["task", "index", "label", "id", "pred"] + columns)
    for t, task in enumerate(tasks):
        picks = predicted(preds.probs[t], task)
        for i, y, p, (pred, _) in zip(preds.indices[t], preds.labels[t], preds.probs[t], picks):
            label = " ".join(str(int(v)) for v in y) if getattr(y, "ndim", 0) else int(y)
            sid = ids[t][int(i)] if ids is not None else ""
            w.writerow([task.name, int(i), label, sid, pred] + probability_cells(p, task, columns))
    write_text(run / f"predictions_{split}.csv", buf.getvalue())


def checkpoint_from(path: str | Path, which: str = "best") -> Path:
    """A run directory or a checkpoint file -> the checkpoint file."""
    p = Path(path)
    if p.is_dir():
        ck = best_path(p) if which == "best" else last_path(p)
        if not ck.is_file():
            raise MailnetError(f"{p}: no {which} checkpoint in this run directory (expected {ck})")
        return ck
    if not p.exists():
        raise MailnetError(f"{p}: no such run directory or checkpoint file")
    return p
