"""The Python entry points behind ``mailnet train`` and ``mailnet evaluate``, for notebooks and scripts.

They take what a script has at hand (a config file or a partial dict, a ``torch.device``), fill in the defaults,
check every key before anything is written, and return the numbers instead of printing them; the commands are thin
wrappers over them, so both give the same run directories and results.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch


@dataclass
class RunResult:
    """A finished run: where it was written, and its test metrics (as ``test_metrics.json`` holds them)."""

    run_dir: Path
    test: dict[str, Any]


def default_run_dir(cfg: Mapping[str, Any]) -> Path:
    """``output.dir/NAME/MODEL/seedN``, the place ``mailnet train`` picks when no ``--run-dir`` is given."""
    return Path(cfg["output"]["dir"]) / str(cfg["name"]) / cfg["model"]["name"] / f"seed{int(cfg['seed'])}"


def train(config: str | Path | Mapping[str, Any], run_dir: str | Path | None = None, *,
          overrides: str | list[str] | None = None, device: str | torch.device = "auto",
          data_root: str | None = None, progress: bool = True) -> RunResult:
    """Train one run from a YAML file or a (possibly partial) config dict, e.g.
    ``mailnet.train({"data": {...}, "train": {"epochs": 2}})``; ``overrides`` are ``key=value`` strings as on the
    command line, a list of them or a single one (``overrides="train.epochs=2"``, not split into characters).
    Any other type of ``config`` or ``overrides`` is a ``ConfigError`` before anything is read. The run directory
    (default: see ``default_run_dir``) must be new or empty; ``resume`` continues one that was interrupted."""
    from mailnet.config import load_config
    from mailnet.engine.trainer import train as train_run

    cfg = load_config(config, [overrides] if isinstance(overrides, str) else overrides)
    out = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    return RunResult(out, train_run(cfg, out, device=device, data_root=data_root, progress=progress))


def resume(run_dir: str | Path, *, device: str | torch.device = "auto", data_root: str | None = None,
           progress: bool = True) -> RunResult:
    """Continue an interrupted run with the config saved in it (a finished run is returned as it is)."""
    from mailnet.engine import rundir
    from mailnet.engine.runs import load_config_of
    from mailnet.engine.trainer import train as train_run

    run = Path(run_dir)
    cfg = load_config_of(run)
    if rundir.is_finished(run):
        metrics = rundir.test_metrics_path(run)
        return RunResult(run, json.loads(metrics.read_text()) if metrics.is_file() else {})
    return RunResult(run, train_run(cfg, run, device=device, data_root=data_root, resume=True, progress=progress))


def evaluate(target: str | Path, split: str = "test", *, which: str = "best", device: str | torch.device = "auto",
             data_root: str | None = None, batch_size: int | None = None, mc_samples: int | None = None,
             partner_draws: int | None = None) -> dict[str, Any]:
    """Per-task metrics of a run directory's ``which`` checkpoint (or of a checkpoint file) on ``split`` of the
    data it was trained on; random models are averaged over ``mc_samples`` draws. ``None`` takes the run's own
    ``eval`` setting, the batch size included: a random model's random filters are drawn once per batch, so
    another batch size gives another (equally valid) draw and the run's test metrics would not be reproduced."""
    from mailnet.config import resolve_saved
    from mailnet.data import build_data, load_manifest
    from mailnet.engine import rundir
    from mailnet.engine.evaluation import evaluate as evaluate_model
    from mailnet.engine.runs import load_model
    from mailnet.engine.trainer import resolve_device
    from mailnet.errors import ConfigError

    if split not in ("train", "val", "test"):
        raise ConfigError(f"split {split!r}: choose train, val or test")
    dev = resolve_device(device)
    target = Path(target)
    ckpt = rundir.checkpoint_from(target, which)
    model, meta, _ = load_model(ckpt, device=dev)
    cfg = resolve_saved(meta.get("config"), str(ckpt))
    manifest_file = rundir.manifest_path(target) if target.is_dir() else ckpt.parent.parent / "manifest.json"
    manifest = load_manifest(manifest_file) if manifest_file.is_file() else None
    data = build_data(cfg["data"], data_root=data_root, seed=int(cfg["seed"]), manifest=manifest)
    ecfg = cfg["eval"]
    result = evaluate_model(model, data, split, dev,
                            batch_size=batch_size if batch_size is not None else ecfg["batch_size"],
                            mc_samples=mc_samples if mc_samples is not None else ecfg["mc_samples"],
                            partner_draws=partner_draws if partner_draws is not None else ecfg["partner_draws"],
                            seed=int(cfg["seed"]), loss_weights=cfg["train"]["loss_weights"])
    result.pop("_predictions")
    result["checkpoint"] = str(ckpt)
    return result
