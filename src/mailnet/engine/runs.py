"""Loading what a run left behind: its config, its data (same splits and pairing) and a trained model."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import yaml
from torch.overrides import TorchFunctionMode

from mailnet.config import load_yaml, resolve_saved
from mailnet.data import build_data, load_manifest
from mailnet.engine import rundir
from mailnet.engine.checkpoint import first_nonfinite, load_checkpoint, model_weights
from mailnet.errors import MailnetError, ModelError
from mailnet.models import create_model


def load_model(checkpoint: str | Path, device: str | torch.device = "cpu", *, expect_name: str | None = None,
               **overrides: Any) -> tuple[nn.Module, dict[str, Any], dict[str, torch.Tensor]]:
    """Rebuild the model a checkpoint (or a run directory's best checkpoint) describes and load its weights;
    returns (model, meta, all tensors). ``overrides`` replace keyword arguments of the saved description;
    ``expect_name``: fail unless the checkpoint holds that model."""
    checkpoint = rundir.checkpoint_from(checkpoint)
    tensors, meta = load_checkpoint(checkpoint, device=device)
    spec = meta.get("model")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not isinstance(spec.get("kwargs"), dict):
        raise MailnetError(f"{checkpoint}: checkpoint metadata has no model description (model.name, model.kwargs)")
    if expect_name is not None and spec["name"] != expect_name:
        raise MailnetError(f"{checkpoint}: holds a {spec['name']!r} model, not {expect_name!r}")
    kwargs = {**spec["kwargs"], **overrides}
    check_meta_fits_model(checkpoint, meta, spec["kwargs"])  # the saved description, before any override
    described = _short(f"{spec['name']!r} with {kwargs}")
    weights = model_weights(tensors)
    expected, held = count_weights(spec["name"], kwargs), sum(v.numel() for v in weights.values())
    if expected is not None and expected != held:  # refused before the real build allocates what it describes
        raise ModelError(f"{checkpoint}: weights do not fit model {spec['name']!r} (its metadata describes "
                         f"{described}, which has {expected:,} weights, but the file holds {held:,}: the metadata does "
                         "not match the weights; altered, or another model's weights?)")
    try:
        model = create_model(spec["name"], **kwargs).to(device)
    except Exception as e:  # an unknown model, bad arguments, or one too large to allocate
        raise ModelError(f"{checkpoint}: cannot rebuild model {described} from its metadata "
                         f"({type(e).__name__}: {_short(str(e))})") from None
    bad = first_nonfinite(weights)
    if bad is not None:  # a diverged training: every prediction would be NaN, or look random
        raise MailnetError(f"{checkpoint}: weights contain NaN or infinite values (tensor {bad!r})")
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as e:  # a tensor of the wrong shape
        first = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), str(e).splitlines()[0])
        raise MailnetError(f"{checkpoint}: weights do not fit model {spec['name']!r} ({first})") from None
    if missing or unexpected:
        raise MailnetError(f"{checkpoint}: weights do not fit model {spec['name']!r} "
                           f"(missing {len(missing)}, unexpected {len(unexpected)}: {(missing + unexpected)[:3]})")
    model.eval()
    model.checkpoint_meta = checkpoint_meta(checkpoint, meta)
    return model, meta, tensors


# Factories a module's __init__ makes its parameters and buffers with; tensors made from given values
# (torch.tensor, as_tensor) are left out, so a model's checks of its arguments (finite means, stds) still run.
_SHAPE_ONLY_FACTORIES = (torch.empty, torch.empty_strided, torch.zeros, torch.ones, torch.full, torch.rand,
                         torch.randn, torch.randint, torch.randperm, torch.arange, torch.linspace, torch.eye)


class _ShapesOnly(TorchFunctionMode):
    """Like ``with torch.device("meta")`` (shapes without memory), except for tensors made from given values."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = dict(kwargs or {})
        if func in _SHAPE_ONLY_FACTORIES and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def count_weights(name: str, kwargs: dict[str, Any]) -> int | None:
    """Elements of the state dict ``create_model(name, **kwargs)`` would have, counted without allocating them, so
    that a checkpoint whose metadata describes a huge model (crafted or altered) is refused before it takes
    gigabytes; ``None`` when the model cannot be built that way (its __init__ reads values), or not at all (the
    real build then says why)."""
    try:
        with _ShapesOnly():
            model = create_model(name, **kwargs)
    except Exception:  # the real build, which follows, reports the problem in one line
        return None
    return sum(t.numel() for t in model.state_dict().values())


def _short(text: str, limit: int = 200) -> str:
    """One line of at most ``limit`` characters (a crafted spec or a multi-line error would flood the terminal)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


def check_meta_fits_model(checkpoint: Path, meta: dict[str, Any], kwargs: dict[str, Any]) -> None:
    """Refuse metadata whose tasks or modalities disagree with the model it describes: predict would index a head
    that is not there, and export would write a model card for outputs the graph does not have."""
    def as_list(v: Any) -> list | None:
        return [v] if isinstance(v, int) and not isinstance(v, bool) else (list(v) if isinstance(v, (list, tuple))
                                                                           else None)

    for what, key, field in (("tasks", "num_classes", "num_classes"), ("modalities", "in_chans", "in_chans")):
        held, built = meta.get(what), as_list(kwargs.get(key))
        if not isinstance(held, list) or not held or built is None:
            continue  # a checkpoint without them (a resume state), or a model that does not take the argument
        listed = [e.get(field) if isinstance(e, dict) else None for e in held]
        if listed != built:
            raise MailnetError(f"{checkpoint}: metadata lists {what} with {field} {listed} but the model it "
                               f"describes has {key}={built}: the metadata was altered or comes from another model")


def checkpoint_meta(checkpoint: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """What a user of the bare model needs to read its outputs (like timm's ``pretrained_cfg``): which input is
    which modality, at what size and channels, and which logits tensor is which task, with its class names."""
    return {"checkpoint": str(checkpoint), "model": meta["model"]["name"], "epoch": meta.get("epoch"),
            "paired": meta.get("paired"),
            "modalities": [{k: m.get(k) for k in ("name", "in_chans", "img_size")} for m in meta.get("modalities", [])],
            "tasks": [{k: t.get(k) for k in ("name", "task_type", "num_classes", "class_names")}
                      for t in meta.get("tasks", [])],
            "input_range": [0.0, 1.0]}


def load_config_of(run: Path) -> dict[str, Any]:
    path = rundir.config_path(run)
    if not path.is_file():
        raise MailnetError(f"{run}: not a run directory (no config.yaml)")
    try:
        cfg = load_yaml(path.read_text())
    except yaml.YAMLError:
        raise MailnetError(f"{path}: not valid YAML") from None
    return resolve_saved(cfg, str(path))


def load_run(run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu",
             data_root: str | None = None) -> tuple[nn.Module, Any, dict[str, Any]]:
    """(model in eval mode, the run's data with its exact splits and pairing, the resolved config)."""
    run = Path(run_dir)
    cfg = load_config_of(run)
    checkpoint = rundir.checkpoint_from(run, which)
    model, meta, _ = load_model(checkpoint, device=device)
    data = build_data(cfg["data"], data_root=data_root, seed=int(cfg["seed"]),
                      manifest=load_manifest(rundir.manifest_path(run)))
    check_fits_data(checkpoint, meta, data)
    return model, data, cfg


def check_fits_data(checkpoint: Path, meta: dict[str, Any], data: Any) -> None:
    """Refuse a checkpoint whose inputs or heads are not the run's data: copied in from another run, its weights
    would be scored against other labels (a 5-class head read on 2-class labels) and give a number, not an error."""
    def described(items: list[Any], keys: tuple[str, ...]) -> list[tuple]:
        return [tuple(i.get(k) if isinstance(i, dict) else getattr(i, k) for k in keys) for i in items]

    for what, keys, held, wanted in (
            ("modalities", ("name", "in_chans", "img_size"), meta.get("modalities", []), data.modalities),
            ("tasks", ("name", "num_classes"), meta.get("tasks", []), data.tasks)):
        if held and described(held, keys) != described(wanted, keys):  # (checkpoints without them: not checked)
            show = lambda rows: "; ".join(", ".join(str(v) for v in r) for r in rows) or "none"  # noqa: E731
            raise MailnetError(f"{checkpoint}: trained for {what} [{show(described(held, keys))}] but the run's "
                               f"config has [{show(described(wanted, keys))}] ({', '.join(keys)}): a checkpoint "
                               "from another run?")
