"""The training loop: config -> data -> model -> epochs -> checkpoints -> test metrics, in one run directory.

Every epoch starts from a seed derived from (run seed, epoch) and the data layer's epoch order is a pure function
of the same, so a run resumed from its last checkpoint continues exactly as if it had never stopped.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from mailnet.config import complete, dump_config
from mailnet.data import build_data, load_manifest
from mailnet.engine import class_weights, rundir
from mailnet.engine.checkpoint import join_state, load_checkpoint, model_weights, save_checkpoint, split_state
from mailnet.engine.distributed import (DistInfo, barrier, broadcast_object, init_distributed, ranks_failing,
                                       sync_buffers)
from mailnet.engine.evaluation import check_outputs, evaluate, task_loss, to_device
from mailnet.engine.init_weights import init_from_checkpoint, summary_line
from mailnet.engine.optim import build_optimizer, build_scheduler, step_scheduler
from mailnet.engine.randomness import reseed
from mailnet.environment import sitting_info
from mailnet.errors import ConfigError, MailnetError
from mailnet.layers.noise import set_noise_scale
from mailnet.models import create_model
from mailnet.models.registry import architecture
from mailnet.utils import seed_everything, write_json, write_text


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or a ``torch.device``; a CUDA device that is absent fails here."""
    if isinstance(name, str) and name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise MailnetError(f"device {name!r}: choose cpu, cuda, cuda:N or auto") from None
    if dev.type not in ("cpu", "cuda"):
        raise MailnetError(f"device {name!r}: choose cpu, cuda, cuda:N or auto")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MailnetError(f"device {name}: no CUDA device is available here (use cpu or auto)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise MailnetError(f"device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return dev


def model_spec(cfg: dict[str, Any], data: Any) -> dict[str, Any]:
    """What ``create_model`` needs, stored in every checkpoint so it can be rebuilt without the data, with every
    default argument written out (:func:`mailnet.models.registry.architecture`). The input and head shapes come
    from the data only: a value in ``model.kwargs`` would silently build a model that does not fit it."""
    sizes = [m.img_size for m in data.modalities]
    from_data = {"in_chans": [m.in_chans for m in data.modalities], "num_classes": [t.num_classes for t in data.tasks],
                 "img_size": sizes[0] if len(set(sizes)) == 1 else sizes}  # one per modality only where they differ
    user = cfg["model"].get("kwargs") or {}
    for key in from_data:
        if key in user:
            raise ConfigError(f"model.kwargs.{key}: set from the data ({from_data[key]}); remove it from the config")
    return {"name": cfg["model"]["name"], "kwargs": architecture(cfg["model"]["name"], {**from_data, **user})}


def build_model(spec: dict[str, Any], data: Any | None = None) -> nn.Module:
    """The model of ``spec``; with ``data``, also checked against the modalities' image sizes, so that a model which
    fuses feature maps across modalities fails before a run directory is written, not at its first batch. An
    unknown argument came from ``model.kwargs`` (the rest are set from the data): the error names that key."""
    from mailnet.errors import ModelError

    try:
        model = create_model(spec["name"], **spec["kwargs"])
    except ModelError as e:
        if data is not None and "img_size" in str(e):
            _name_too_small_size(spec["name"], data)
        if "unknown argument(s)" not in str(e):
            raise
        raise ConfigError(f"model.kwargs: {e}") from None
    sizes = sorted({m.img_size for m in data.modalities}) if data is not None else []
    if len(sizes) > 1 and getattr(model, "needs_equal_sizes", False):
        raise ConfigError(f"data.modalities: image sizes {sizes} differ, but {spec['name']} fuses feature maps "
                          "across modalities and needs one size; give every modality the same size (data.size)")
    return model


def _name_too_small_size(model: str, data: Any) -> None:
    """The model refused its ``img_size``, which comes from the data: name the config key the user sets
    (``data.size``, or a modality's own ``size``) rather than the model's argument. Returns when no size is
    below the built-in models' minimum (then the model's own message stands)."""
    from mailnet.models.inputs import MIN_IMG_SIZE

    raw = (getattr(data, "config", None) or {}).get("modalities") or []
    for i, m in enumerate(data.modalities):
        if m.img_size < MIN_IMG_SIZE:
            own = i < len(raw) and isinstance(raw[i], dict) and "size" in raw[i]
            key = f"data.modalities[{i}].size" if own else "data.size"
            raise ConfigError(f"{key}: {m.img_size} px is too small for model {model!r} (modality {m.name!r}); "
                              f"it needs images of at least {MIN_IMG_SIZE} px")


def train(cfg: dict[str, Any], run_dir: str | Path, *, device: str | torch.device = "auto", data_root: str | None = None,
          resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) one run; returns the final test metrics (on rank 0; other ranks return {}). ``cfg`` may
    be partial: defaults are filled in and every key is checked before anything is written."""
    cfg = complete(cfg)
    run_dir = Path(run_dir)
    dev = resolve_device(device)
    info = init_distributed(dev)
    if info.enabled and dev.type == "cuda":
        dev = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(dev)
    created = not resume and not run_dir.exists()
    try:
        return _train(cfg, run_dir, dev, info, data_root, resume, progress)
    except BaseException:
        # a fresh run that fails (or is interrupted) before its first epoch is saved leaves nothing behind: a bad
        # image found only when read, say, must not leave a half-made run directory
        if not resume and info.is_main and run_dir.is_dir() and rundir.never_trained(run_dir):
            rundir.remove_unstarted(run_dir, whole=created)
        raise


def _train(cfg, run_dir: Path, dev: torch.device, info: DistInfo, data_root, resume: bool, progress: bool):
    seed = int(cfg["seed"])
    tcfg, ecfg = cfg["train"], cfg["eval"]
    seed_everything(seed)
    manifest = load_manifest(rundir.manifest_path(run_dir)) if resume else None
    # --data-root first, then the config's data.root, then $MAILNET_DATA and the default folders (build_data)
    data = build_data(cfg["data"], data_root=data_root, seed=seed, manifest=manifest)
    spec = model_spec(cfg, data)
    model = build_model(spec, data)
    init = None
    if cfg["model"]["init_from"] and not resume:  # a resumed run's weights come from its last checkpoint
        init = init_from_checkpoint(model, cfg["model"]["init_from"])
    model = model.to(dev)
    warmup = float(tcfg["noise_warmup"])
    if warmup and not set_noise_scale(model, 1.0):
        raise MailnetError(f"train.noise_warmup: {spec['name']} has no attention noise to warm up "
                           "(it applies to robust_mail); set it to 0")
    opt = build_optimizer(model, tcfg)
    sched = build_scheduler(opt, tcfg)
    weights = tcfg["loss_weights"] or [1.0] * len(data.tasks)
    if len(weights) != len(data.tasks):
        raise MailnetError(f"train.loss_weights: {len(weights)} weights for {len(data.tasks)} tasks")
    adv = _adversary(tcfg["adv"])  # before anything is written: a bad --adv-* value leaves no run directory
    class_w = class_weights.resolve(tcfg["class_weights"], data.tasks, data.labels("train"))

    state = {"epoch": 0, "history": [], "best_score": None, "best_epoch": None, "bad_epochs": 0}
    if resume:
        state = _restore(run_dir, model, opt, sched)
    elif info.is_main:
        rundir.prepare(run_dir)
        write_text(rundir.config_path(run_dir), dump_config(cfg))
        data.save_manifest(rundir.manifest_path(run_dir))
        if init is not None:
            write_json(rundir.init_path(run_dir), init)
            if progress:
                print(summary_line(init), flush=True)
    class_weighted = any(w is not None for w in class_w)
    if info.is_main and progress and class_weighted:
        print(class_weights.describe(class_w, data.tasks), flush=True)
    class_w = [None if w is None else w.to(dev) for w in class_w]
    if info.is_main:
        rundir.record_sitting(run_dir, sitting_info(dev.type, info.world_size, resumed=resume))
    barrier(info)

    net: nn.Module = model
    if info.enabled:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    amp = dev.type == "cuda" and tcfg["amp"] == "auto"
    epochs = tcfg["epochs"]
    stochastic: bool | None = None
    started, stop_reason = time.perf_counter(), "epochs"
    # a resumed run that had already stopped early (killed during its test evaluation) trains no further
    stopped_early = _patience_spent(tcfg, state)
    if stopped_early:
        stop_reason = "early_stopping"

    for epoch in range(state["epoch"], state["epoch"] if stopped_early else epochs):
        t0 = time.perf_counter()
        reseed(model, seed * 100003 + epoch)
        net.train()
        loader = data.loader("train", tcfg["batch_size"], epoch=epoch, shuffle=True, drop_last=False,
                             rank=info.rank, world_size=info.world_size, num_workers=tcfg["num_workers"])
        total, n = 0.0, 0
        steps = min(len(loader), tcfg["max_steps_per_epoch"] or len(loader))
        bar = _progress(loader, progress and info.is_main, f"epoch {epoch + 1}/{epochs}", total=steps)
        for step, batch in enumerate(bar):
            if tcfg["max_steps_per_epoch"] and step >= tcfg["max_steps_per_epoch"]:
                break
            if warmup:
                set_noise_scale(model, noise_warmup_scale(epoch + step / steps, warmup))
            batch = to_device(batch, dev)
            images = batch["images"]
            if adv is not None:
                images = adv(net, images, batch["labels"], batch["mask"])
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                logits = net(images)
            if step == 0:  # the model's output contract, once per epoch rather than at every step
                check_outputs(logits, data.tasks, images[0].shape[0])
            loss = sum(w * task_loss(lg.float(), y, m, task, class_weight=cw)
                       for w, lg, y, m, task, cw in zip(weights, logits, batch["labels"], batch["mask"], data.tasks,
                                                        class_w))
            bad = ranks_failing(not bool(torch.isfinite(loss.detach())), info, dev)
            if bad:  # raised on every rank at once, so none is left waiting in the gradient all-reduce
                value = f"{float(loss.detach())}" if info.rank in bad else "non-finite"
                where = f" on rank {', '.join(map(str, bad))}" if info.enabled else ""
                raise MailnetError(f"training loss became {value}{where} at epoch {epoch + 1}, step {step + 1}; "
                                   "lower train.lr or check the data")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tcfg["grad_clip"]:
                nn.utils.clip_grad_norm_(model.parameters(), tcfg["grad_clip"])
            opt.step()
            total += float(loss.detach())
            n += 1
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{total / n:.4f}")
        if warmup:  # validation (and so model selection) always sees the model as specified
            set_noise_scale(model, 1.0)
        sync_buffers(model, info)
        val = evaluate(model, data, "val", dev, batch_size=ecfg["batch_size"], mc_samples=ecfg["val_mc_samples"],
                       partner_draws=0, seed=seed, loss_weights=weights, dist_info=info, stochastic=stochastic)
        val.pop("_predictions")
        stochastic = val["stochastic"]  # a property of the architecture: tried once, then reused
        lr = opt.param_groups[0]["lr"]  # the rate this epoch trained with
        step_scheduler(sched, val["loss"])
        row = _history_row(epoch, lr, total / max(n, 1), val, time.perf_counter() - t0)
        state["history"].append(row)
        score = -val["loss"] if tcfg["select"] == "val_loss" else _auc_score(val)
        improved = is_better(score, state["best_score"])
        if improved:
            state.update(best_score=score, best_epoch=epoch + 1)
        finite = [r["val_loss"] for r in state["history"] if math.isfinite(r["val_loss"])]
        state["bad_epochs"] = (0 if math.isfinite(val["loss"]) and val["loss"] <= min(finite)
                               else state["bad_epochs"] + 1)
        state["epoch"] = epoch + 1
        if info.is_main:
            if improved:
                _save_best(run_dir, model, spec, cfg, data, state, val)
            _save_last(run_dir, model, opt, sched, spec, cfg, state)
            rundir.write_history(run_dir, state["history"])
            if progress:
                print(_epoch_line(row, data.tasks), flush=True)
        barrier(info)
        if _patience_spent(tcfg, state):
            if info.is_main and progress:
                print(f"early stopping: validation loss has not improved for {state['bad_epochs']} epochs")
            stop_reason = "early_stopping"
            break
        out_of_time = epoch + 1 < epochs and over_time_limit(time.perf_counter() - started, row["seconds"],
                                                             tcfg["time_limit"])
        if broadcast_object(out_of_time, info):  # rank 0's clock decides for all: ranks must stop together
            if info.is_main:
                print(f"train.time_limit ({tcfg['time_limit']} s): stopping after epoch {epoch + 1} of {epochs}; "
                      "the best checkpoint so far is evaluated", flush=True)
            stop_reason = "time_limit"
            break

    # the best checkpoint, on every modality's full test split
    tensors, _ = load_checkpoint(rundir.best_path(run_dir), device=dev)
    model.load_state_dict(model_weights(tensors))
    test = evaluate(model, data, "test", dev, batch_size=ecfg["batch_size"], mc_samples=ecfg["mc_samples"],
                    partner_draws=ecfg["partner_draws"], seed=seed, loss_weights=weights, dist_info=info,
                    stochastic=stochastic)
    preds = test.pop("_predictions")
    if not info.is_main:
        return {}
    test.update(best_epoch=state["best_epoch"], epochs_run=state["epoch"], stop_reason=stop_reason,
                run_dir=str(run_dir))
    if class_weighted:
        test["train_class_weights"] = class_weights.as_record(class_w, data.tasks)
    write_json(rundir.test_metrics_path(run_dir), test)
    rundir.save_predictions(run_dir, "test", data.tasks, preds, ids=data.sample_ids("test"))
    from mailnet.engine.plots import plot_run

    plot_run(run_dir, state["history"], data.tasks, preds, loss_weight_sum=float(sum(weights)),
             class_weighted=class_weighted)
    rundir.mark_finished(run_dir)
    return test


def over_time_limit(elapsed: float, last_epoch: float, limit: float | None) -> bool:
    """Whether another epoch, as long as the last one, would end past ``limit`` seconds of this process's training
    (a resumed run counts from its restart): stopping *before* the overrun keeps a slot's deadline."""
    return limit is not None and elapsed + last_epoch > limit


def noise_warmup_scale(epochs_done: float, warmup: float) -> float:
    """The attention-noise scale after ``epochs_done`` (fractional) epochs: a linear ramp from 0 to 1 over
    ``warmup`` epochs, then 1 (the model as specified)."""
    return 1.0 if warmup <= 0 else min(1.0, max(0.0, epochs_done / warmup))


def _adversary(adv_cfg: dict[str, Any]):
    """A per-batch perturbation for adversarial training, or None."""
    if not adv_cfg.get("method"):
        return None
    from mailnet.attacks.adv_train import make_adversary

    return make_adversary(adv_cfg)


def _patience_spent(tcfg: dict[str, Any], state: dict[str, Any]) -> bool:
    """Early stopping's condition, checked after every epoch and, on resume, before the first."""
    return bool(tcfg["early_stopping"]) and state["bad_epochs"] >= tcfg["early_stopping"]


def is_better(score: float, best: float | None) -> bool:
    """Model selection: the first epoch always counts (there must be a best checkpoint); after it a NaN score never
    wins, and a real score beats a NaN best (``x > nan`` is always False, which would freeze the selection)."""
    if best is None:
        return True
    return not math.isnan(score) and (math.isnan(best) or score > best)


def _auc_score(val: dict[str, Any]) -> float:
    s = val["mean_auc"]
    return val["mean_acc"] if s is None or math.isnan(s) else s


def _history_row(epoch: int, lr: float, train_loss: float, val: dict[str, Any], seconds: float) -> dict[str, Any]:
    row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss,
                           "val_loss": val["loss"], "val_mean_acc": val["mean_acc"], "val_mean_auc": val["mean_auc"]}
    for name, m in val["tasks"].items():
        row[f"val_{name}_acc"] = m["acc"]
        row[f"val_{name}_auc"] = m["auc"]
    row["seconds"] = seconds
    return row


def _epoch_line(row: dict[str, Any], tasks) -> str:
    parts = [f"epoch {row['epoch']}", f"train_loss {row['train_loss']:.4f}", f"val_loss {row['val_loss']:.4f}"]
    parts += [f"{t.name} acc {row[f'val_{t.name}_acc']:.3f} auc {row[f'val_{t.name}_auc']:.3f}" for t in tasks]
    parts.append(f"{row['seconds']:.1f}s")
    return " | ".join(parts)


def _progress(loader, enabled: bool, desc: str, total: int):
    """``total``: the steps this epoch will take (``max_steps_per_epoch`` may stop it before the loader ends)."""
    if not enabled:
        return loader
    from tqdm.auto import tqdm

    return tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, total=total)


def _common_meta(spec, cfg, data) -> dict[str, Any]:
    import mailnet

    return {"mailnet_version": mailnet.__version__, "model": spec, "config": cfg,
            "tasks": [t.to_dict() for t in data.tasks], "modalities": [m.to_dict() for m in data.modalities],
            "paired": bool(data.paired)}


def _save_best(run_dir, model, spec, cfg, data, state, val) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    bank = cfg["eval"]["partner_bank"]
    if not data.paired and bank:
        for m in range(len(data.modalities)):
            imgs = data.sample_images(m, "train", bank, seed=int(cfg["seed"]))
            tensors[f"partner_bank.{m}"] = (imgs.clamp(0, 1) * 255).round().to(torch.uint8)
    meta = {**_common_meta(spec, cfg, data), "epoch": state["best_epoch"], "val": val, "kind": "best"}
    save_checkpoint(rundir.best_path(run_dir), tensors, meta)


def _save_last(run_dir, model, opt, sched, spec, cfg, state) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    # both through split_state: it keeps int dict keys (Adam's parameter ids, MultiStepLR's milestones) ints
    opt_json = split_state(opt.state_dict(), "optim", tensors)
    sched_json = split_state(sched.state_dict(), "sched", tensors) if sched is not None else None
    meta = {"mailnet_version": __import__("mailnet").__version__, "model": spec, "config": cfg, "kind": "last",
            "state": state, "optimizer": opt_json, "scheduler": sched_json}
    save_checkpoint(rundir.last_path(run_dir), tensors, meta)


def _restore(run_dir: Path, model, opt, sched) -> dict[str, Any]:
    path = rundir.last_path(run_dir)
    if not path.is_file():
        raise MailnetError(f"{run_dir}: nothing to resume (no {path.relative_to(run_dir)}: no epoch finished); "
                           "start it afresh with the same command and --run-dir (this directory is reused)")
    # read on the CPU: the optimizer moves its state to the parameters' device itself, except Adam's step counts,
    # which must stay on the CPU (on a GPU every step would wait on reading them back)
    tensors, meta = load_checkpoint(path, device="cpu")
    model.load_state_dict(model_weights(tensors))
    opt.load_state_dict(join_state(meta["optimizer"], tensors))
    if sched is not None and meta.get("scheduler") is not None:
        sched.load_state_dict(join_state(meta["scheduler"], tensors))
    return meta["state"]

