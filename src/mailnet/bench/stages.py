"""The three things a bench does to a job, each a thin seam over the library module that owns it:

- ``train_stage``: ``mailnet.engine.trainer.train`` into the job's run directory (reuse / resume / fresh);
- ``attack_stage``: the attack suite (``mailnet.attacks``) on the run's best checkpoint;
- ``cost_stage``: the profiler (``mailnet.profiling``) on the exact model the job trained.

Each returns plain JSON-able dicts in the bench's own small schema, so the report never depends on the internals
of the modules it measures with.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from mailnet.bench.suite import Job
from mailnet.engine import rundir
from mailnet.errors import MailnetError


class AttackSuiteMissing(MailnetError):
    """The attack suite is not importable here: attacks are skipped (and reported as such), not fatal."""


# ------------------------------------------------------------------------------------------------------ training


def train_stage(job: Job, run: Path, *, device: str, data_root: str | None, verbose: bool,
                need_weights: bool = False) -> str:
    """Make sure ``run`` holds the finished run of ``job``; returns how: reused | resumed | trained.

    ``need_weights``: the caller attacks the run, so a finished run whose best weights were deleted (to save disk)
    is trained again rather than reused, which would leave the attack nothing to load.
    """
    from mailnet.engine.trainer import train

    if rundir.is_finished(run) and rundir.test_metrics_path(run).is_file():
        if not need_weights or rundir.best_path(run).is_file():
            return "reused"
        shutil.rmtree(run)  # finished, but its weights are gone: only a fresh run can give them back
    if rundir.last_path(run).is_file() and rundir.config_path(run).is_file():
        train(job.cfg, run, device=device, data_root=data_root, resume=True, progress=verbose)
        return "resumed"
    if run.exists():  # interrupted before its first checkpoint: nothing worth keeping
        shutil.rmtree(run)
    train(job.cfg, run, device=device, data_root=data_root, resume=False, progress=verbose)
    return "trained"


def job_record(job: Job, run: Path, suite_name: str) -> dict[str, Any]:
    """The small, weight-free record of a finished run: what ran, its test metrics and its training history."""
    test = json.loads(rundir.test_metrics_path(run).read_text())
    test.pop("run_dir", None)
    history_path = run / "metrics.json"
    history = json.loads(history_path.read_text()) if history_path.is_file() else []
    best_meta = rundir.best_path(run).with_suffix(".json")
    spec = json.loads(best_meta.read_text()).get("model") if best_meta.is_file() else None
    return {
        "key": job.key, "suite": suite_name, "composition": job.composition.name, "model": job.model.label,
        "model_name": job.model.name, "seed": job.seed, "config": job.cfg, "model_spec": spec, "test": test,
        "history": history, "train_seconds": float(sum(r.get("seconds", 0.0) for r in history)),
        "weights_sha256": weights_fingerprint(run), "data_sources": data_sources(run), "attacks": {},
    }


def data_sources(run: Path) -> list[dict[str, Any]] | None:
    """Per modality, the file or folder the run read and its native image size, from the run's data manifest:
    the suite's config names a MedMNIST flag and a size, not which file served it (``pneumoniamnist.npz`` at 28 px
    upsampled, or ``pneumoniamnist_128.npz``), so the record keeps that too. Names only, no machine paths."""
    path = run / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        out = []
        for m in manifest.get("modalities", []):
            src = m.get("source") or {}
            out.append({"modality": m.get("name"), "kind": src.get("kind"), "ident": src.get("ident"),
                        "file": Path(str(src.get("location") or "")).name or None,
                        "native_size": src.get("native_size"), "img_size": m.get("img_size")})
        return out
    except (ValueError, AttributeError, TypeError):
        return None


def weights_fingerprint(run: Path) -> str | None:
    """The fingerprint of the run's best weights (None without them): what lets a later sitting check that the
    weights it trained again to attack a stored record are the ones that record's metrics were measured on."""
    from mailnet.engine.checkpoint import tensors_fingerprint

    best = rundir.best_path(run)
    return tensors_fingerprint(best) if best.is_file() else None


# ------------------------------------------------------------------------------------------------------ attacks


def attack_stage(run: Path, settings: dict[str, Any], *, device: str, data_root: str | None,
                 done: list[dict] | None = None, on_unit=None) -> dict[str, Any]:
    """Attack the run's best checkpoint; returns ``{"rows": [...], "clean": {...}, "details": ...}``.

    A row is ``{"attack", "eps" (text as in the suite), "eps_value", "task", "robust_acc", "clean_acc", "n",
    "robust_bal_acc", "clean_bal_acc"}`` (balanced accuracies: None in records of an earlier mailnet).
    ``done`` / ``on_unit``: resume from, and report, the attack units finished so far (``run_suite``).
    """
    try:
        from mailnet.attacks import suite as attack_suite  # noqa: F401
    except ImportError:
        raise AttackSuiteMissing("the attack suite (mailnet.attacks.suite) is not available in this checkout") from None
    return _attack_with_suite(run, settings, device=device, data_root=data_root, done=done, on_unit=on_unit)


# Bench attack options that are not SuiteSettings fields.
ATTACK_OPTION_EXTRAS = ("threat", "subset_seed", "split")


def attack_option_names() -> tuple[str, ...]:
    """The keys ``attacks.options`` may hold: the attack suite's settings plus threat / subset_seed / split."""
    from dataclasses import fields

    from mailnet.attacks.suite import SuiteSettings

    own = ("steps", "restarts", "eot", "batch_size")  # set by the bench's own keys
    return tuple(f.name for f in fields(SuiteSettings) if f.name not in own) + ATTACK_OPTION_EXTRAS


def _attack_with_suite(run: Path, settings: dict[str, Any], *, device: str, data_root: str | None,
                       done: list[dict] | None = None, on_unit=None) -> dict[str, Any]:
    """The same pipeline as ``mailnet attack``: the run's data and best checkpoint, a seeded subset of the test
    split (the same samples for every model), ``run_suite`` and its sanity checks."""
    from mailnet.attacks.sanity import failures, run_sanity
    from mailnet.attacks.subset import select_subset, stack_batches
    from mailnet.attacks.suite import SuiteSettings, run_suite
    from mailnet.bench.suite import eps_value
    from mailnet.engine.randomness import reseed
    from mailnet.engine.runs import load_run
    from mailnet.engine.trainer import resolve_device

    opts = dict(settings.get("options") or {})
    threat = opts.pop("threat", "joint")
    subset_seed = int(opts.pop("subset_seed", 0))
    split = opts.pop("split", "test")
    suite_settings = SuiteSettings(steps=settings["steps"], restarts=settings["restarts"], eot=settings["eot"],
                                   batch_size=settings["batch_size"], **opts)
    dev = resolve_device(device)
    model, data, _ = load_run(run, which="best", device=dev, data_root=data_root)
    rows = stack_batches(data.loader(split, settings["batch_size"], partner_seed=subset_seed))
    rows = select_subset(rows, settings["subset"], seed=subset_seed).to(dev)
    eps_text = {eps_value(e): e for e in settings["eps"]}
    reseed(model, suite_settings.seed)
    result = run_suite(model, rows, settings["names"], list(eps_text), threat, suite_settings,
                       task_names=[t.name for t in data.tasks], modality_names=[m.name for m in data.modalities],
                       done=done, on_unit=on_unit)
    out_rows = []
    for r in result.records:
        if r.get("role", "main") != "main":
            continue
        attack = r["attack"] if r.get("perturbed", "all") == "all" else f"{r['attack']} ({r['perturbed']} only)"
        out_rows.append({"attack": attack, "eps": eps_text.get(r["eps"], f"{r['eps_255']:g}/255"),
                         "eps_value": r["eps"], "task": r["task"], "robust_acc": r["robust_acc"],
                         "clean_acc": r["clean_acc"], "n": r["n"], "robust_bal_acc": r.get("robust_bal_acc"),
                         "clean_bal_acc": r.get("clean_bal_acc"), "steps": r.get("steps"),
                         "restarts": r.get("restarts"), "eot": r.get("eot")})
    checks = run_sanity(result.records, result.gradient_agreement)
    failed = failures(checks)
    return {"rows": out_rows, "clean": result.clean, "random_model": result.random_model,
            "suite_settings": suite_settings.to_dict(), "threat": threat, "split": split, "subset_seed": subset_seed,
            "sanity": {"passed": not failed, "checks": len(checks),
                       "failed": [f"{c.name}: {c.detail}" for c in failed]},
            "records": result.records, "gradient_agreement": result.gradient_agreement}


# ------------------------------------------------------------------------------------------------------ cost


def cost_inputs(spec: dict[str, Any], size: int | None) -> dict[str, Any]:
    """The profile settings that describe the job's model input: modality count, size, channels, classes."""
    kw = spec["kwargs"]
    chans, classes = list(kw["in_chans"]), list(kw["num_classes"])
    built = kw["img_size"] if isinstance(kw["img_size"], int) else max(kw["img_size"])
    return {"modalities": len(chans), "size": int(size or built), "in_chans": max(chans),
            "num_classes": max(classes)}


def cost_stage(spec: dict[str, Any], size: int | None, settings: dict[str, Any], device: str) -> dict[str, Any]:
    """Parameters, MACs, batch-1 latency and training throughput of the model ``spec`` describes."""
    from mailnet import profiling

    inputs = cost_inputs(spec, size)
    extra = {k: v for k, v in spec["kwargs"].items() if k not in ("in_chans", "num_classes", "img_size")}
    prof = {"threads": settings["threads"], "batch": settings["batch"], "latency_iters": settings["latency_iters"],
            "batch_iters": settings["batch_iters"], "warmup": settings["warmup"],
            "device": "cuda" if device.startswith("cuda") else "cpu", **inputs}
    if "stem" in extra:
        prof["stem"] = extra.pop("stem")
    row = profiling.compare([spec["name"]], **prof, model_kwargs=extra or None)[0]
    keep = ("params", "macs", "flops", "latency_ms", "forward_batch_ms", "forward_samples_per_s", "train_step_ms",
            "train_samples_per_s", "stochastic", "counter", "uncounted_ops", "settings")
    out = {k: row.get(k) for k in keep}
    out["tool"] = row.get("tool", "mailnet.profiling.compare")
    return out
