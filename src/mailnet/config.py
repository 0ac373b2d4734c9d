"""Run configuration: a YAML file, ``key=value`` overrides, defaults, and validation of every key.

The data layer validates the ``data:`` section itself; this module owns ``model``, ``train``, ``eval`` and the
top level, so a typo such as ``train.epoch=3`` fails at once with the key's full path.
"""
from __future__ import annotations

import copy
import re
from os import PathLike
from pathlib import Path
from typing import Any, Mapping

import yaml

from mailnet.errors import ConfigError, unknown_key_hint

DEFAULTS: dict[str, Any] = {
    "name": None,
    "seed": 0,
    "model": {"name": "mail", "kwargs": {}, "init_from": None},  # init_from: a run dir or checkpoint to start from
    "data": {},
    "train": {
        "epochs": 10,
        "batch_size": 64,
        "optimizer": "adam",  # adam | adamw | sgd
        "lr": 1.0e-3,
        "weight_decay": 0.0,
        "momentum": 0.9,
        "schedule": "multistep",  # multistep | plateau | cosine | none
        "milestones": [0.5, 0.75],  # multistep: fractions of the epochs
        "gamma": 0.1,
        "plateau_patience": 10,
        "early_stopping": None,  # patience in epochs, on the validation loss
        "time_limit": None,  # seconds: no epoch is started that would end past it (a shared GPU's slot)
        "select": "val_auc",  # val_auc | val_loss
        "loss_weights": None,  # one weight per task; default 1 each
        "class_weights": None,  # null | balanced | per task: null, balanced or a list of class weights
        "amp": "auto",  # auto (bf16 autocast on CUDA) | off
        "num_workers": 0,
        "max_steps_per_epoch": None,  # cap for smoke runs
        "grad_clip": None,
        "noise_warmup": 0,  # epochs over which Robust-MAIL's attention noise ramps from 0 to its full std
        "adv": {"method": None, "eps": "4/255", "steps": 7, "alpha": None},
    },
    "eval": {
        "batch_size": 256,
        "mc_samples": 8,  # test: draws averaged for models that are random at inference
        "val_mc_samples": 1,  # validation during training (model selection): draws per epoch
        "partner_draws": 3,  # unpaired: partner re-draws for partner sensitivity
        "partner_bank": 16,  # images per modality saved with a checkpoint for predict
    },
    "output": {"dir": "runs"},
}

class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that ``1e-3`` is a number: YAML 1.1 wants a dot (``1.0e-3``) and reads the
    way everyone writes a learning rate as text, which then fails validation; and that a key given twice in one
    mapping is an error, not "the last one wins" (a forgotten earlier ``lr:`` would silently change the run)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<: *anchor``: merged keys may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) or key is None:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def load_yaml(text: str) -> Any:
    """Parse YAML text safely (no object construction), with ``1e-3`` read as a float."""
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506 - YamlLoader is a SafeLoader


CHOICES = {
    "train.optimizer": ("adam", "adamw", "sgd"),
    "train.schedule": ("multistep", "plateau", "cosine", "none"),
    "train.select": ("val_auc", "val_loss"),
    "train.amp": ("auto", "off"),
}
# Sections whose content is free-form (checked by their owners, not here).
OPEN_SECTIONS = ("data", "model.kwargs")


def load_config(source: str | Path | Mapping[str, Any] | None,
                overrides: list[str] | None = None) -> dict[str, Any]:
    """Defaults <- YAML file (or a mapping, possibly partial, from Python) <- ``key=value`` overrides, validated.
    A file names the run after itself; a mapping without ``name`` is named ``run``."""
    if source is not None and not isinstance(source, (str, PathLike, Mapping)):
        raise ConfigError(f"config: expected a YAML file path (str or Path) or a mapping of sections (model, data, "
                          f"train, ...), got {type(source).__name__}")
    if overrides is not None and not isinstance(overrides, (list, tuple)):
        raise ConfigError(f"overrides: expected a list of KEY=VALUE strings, got {type(overrides).__name__}")
    user: dict[str, Any] = {}
    if isinstance(source, Mapping):
        user = copy.deepcopy(dict(source))
        if user.get("name") is None:
            user["name"] = "run"
    elif source is not None:
        p = Path(source)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        user = read_yaml_mapping(p)
        if user.get("name") is None:
            user["name"] = p.stem
    for item in overrides or []:
        apply_override(user, item)
    return complete(user)


def complete(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` with every default filled in and every key checked; a complete config comes back unchanged, so
    the engine can call this on whatever it is handed."""
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"config: expected a mapping of sections (model, data, train, ...), got "
                          f"{type(cfg).__name__}")
    out = merge(DEFAULTS, dict(cfg))
    validate(out)
    return out


def resolve_saved(cfg: Any, where: str) -> dict[str, Any]:
    """A resolved config read back from a run directory or checkpoint, checked again.

    Why merge with the defaults again: a run saved by an earlier mailnet lacks the keys added since (for example
    ``train.noise_warmup``); their defaults reproduce what that run did, so old runs stay loadable."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"{where}: the saved config is not a mapping")
    try:
        return complete(cfg)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def read_yaml_mapping(path: Path, label: str | None = None) -> dict[str, Any]:
    """A YAML file whose top level must be a mapping; ``label`` (default: the path) starts every error line."""
    label = label or str(path)
    try:
        data = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{label}: {yaml_problem(e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{label}: the top level must be a mapping of sections")
    return data


def yaml_problem(e: yaml.YAMLError) -> str:
    """PyYAML's multi-line message as one line that starts with where the problem is (1-based line and column, as
    an editor shows them), then what it is, then the construct it was found in (``while parsing a flow mapping``
    that started on line 1): without the place, a long config has to be searched by eye."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None)
    if mark is None or not problem:
        return f"not valid YAML ({' '.join(str(e).split())})"
    context, cmark = getattr(e, "context", None), getattr(e, "context_mark", None)
    started = f" that started on line {cmark.line + 1}" if cmark is not None and cmark.line != mark.line else ""
    within = f"; {context}{started}" if context else ""
    return f"line {mark.line + 1}, column {mark.column + 1}: not valid YAML ({problem}{within})"


def apply_override(cfg: dict[str, Any], item: str) -> None:
    """``train.epochs=3`` or ``model.kwargs.widths=[16,32,64,128]``; values are parsed as YAML."""
    if not isinstance(item, str):
        raise ConfigError(f"override {item!r}: expected a KEY=VALUE string, e.g. 'train.epochs=3'")
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. train.epochs=3")
    key, raw = item.split("=", 1)
    if not key.strip():  # '=3' used to reach the key check as '' and read ': unknown config key'
        raise ConfigError(f"override {item!r}: the key before '=' is empty; expected KEY=VALUE, e.g. train.epochs=3")
    if any(not part.strip() for part in key.strip().split(".")):
        raise ConfigError(f"override {item!r}: the key {key.strip()!r} has an empty part between its dots")
    try:
        value = load_yaml(raw) if raw != "" else None
    except yaml.YAMLError:
        value = raw
    node = cfg
    parts = key.strip().split(".")
    for part in parts[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node = nxt
    node[parts[-1]] = value


def merge(base: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in user.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and out[k] and k != "kwargs":
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def validate(cfg: dict[str, Any]) -> None:
    _check_keys(cfg, DEFAULTS, "")
    if cfg["train"].get("amp") is False:  # YAML reads a bare `off` (amp: off, train.amp=off) as false
        cfg["train"]["amp"] = "off"
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        value = cfg[section][name]
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(allowed)}")
    _check_values(cfg)
    if not isinstance(cfg["data"], dict) or not cfg["data"]:
        raise ConfigError("data: the config needs a data section (see configs/pneumonia_breast.yaml)")
    if not isinstance(cfg["model"].get("name"), str):
        raise ConfigError("model.name: must be a registered model name (see mailnet.list_models())")


# Numeric keys: (integer?, lowest allowed value, lowest value excluded?, null allowed?). Checked here, before a run
# directory is written, so a typo fails at once instead of after an epoch (or in the final evaluation).
NUMBERS: dict[str, tuple[bool, float, bool, bool]] = {
    "seed": (True, 0, False, False),
    "train.epochs": (True, 1, False, False),
    "train.batch_size": (True, 1, False, False),
    "train.lr": (False, 0, True, False),
    "train.weight_decay": (False, 0, False, False),
    "train.momentum": (False, 0, False, False),
    "train.gamma": (False, 0, True, False),
    "train.plateau_patience": (True, 0, False, False),
    "train.early_stopping": (True, 1, False, True),
    "train.num_workers": (True, 0, False, False),
    "train.max_steps_per_epoch": (True, 1, False, True),
    "train.grad_clip": (False, 0, True, True),
    "train.adv.steps": (True, 1, False, False),
    "eval.batch_size": (True, 1, False, False),
    "eval.mc_samples": (True, 1, False, False),
    "eval.val_mc_samples": (True, 1, False, False),
    "eval.partner_draws": (True, 0, False, False),
    "eval.partner_bank": (True, 0, False, False),
}


def _lookup(cfg: dict[str, Any], path: str) -> Any:
    node: Any = cfg
    for part in path.split("."):
        node = node[part]
    return node


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def _check_values(cfg: dict[str, Any]) -> None:
    """Type and range of every scalar the library reads (bools are not numbers here, although Python says so)."""
    for path, (integer, low, low_open, nullable) in NUMBERS.items():
        v = _lookup(cfg, path)
        if v is None and nullable:
            continue
        kind = "an integer" if integer else "a number"
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        ok = _is_number(v) and (not integer or float(v).is_integer()) and (v > low if low_open else v >= low)
        if not ok:
            raise ConfigError(f"{path}: must be {kind} {bound}{' (or null)' if nullable else ''}, got {v!r}")
        if integer:  # 3.0 -> 3, so that counts are ints downstream
            parent, _, last = path.rpartition(".")
            (_lookup(cfg, parent) if parent else cfg)[last] = int(v)
    t = cfg["train"]
    limit = t["time_limit"]
    if limit is not None and not (_is_number(limit) and limit > 0):
        raise ConfigError(f"train.time_limit: must be a positive number of seconds (or null), got {limit!r}")
    w = t["noise_warmup"]
    if not (_is_number(w) and 0 <= w <= t["epochs"]):
        raise ConfigError(f"train.noise_warmup: must be a number of epochs between 0 and train.epochs "
                          f"({t['epochs']}), got {w!r}")
    ms = t["milestones"]
    if not isinstance(ms, list) or not all(_is_number(m) and 0 < m <= 1 for m in ms):
        raise ConfigError(f"train.milestones: must be a list of fractions of the epochs in (0, 1], got {ms!r}")
    lw = t["loss_weights"]
    if lw is not None and (not isinstance(lw, list) or not lw or not all(_is_number(w) and w >= 0 for w in lw)):
        raise ConfigError(f"train.loss_weights: must be a list of non-negative numbers, one per task (or null), "
                          f"got {lw!r}")
    from mailnet.engine.class_weights import check_setting

    check_setting(t["class_weights"])
    adv = t["adv"]
    if adv["method"] is not None:
        from mailnet.attacks.adv_train import METHODS
        from mailnet.attacks.eps import parse_eps

        if adv["method"] not in METHODS:
            raise ConfigError(f"train.adv.method: {adv['method']!r} is not one of {', '.join(METHODS)} (or null)")
        parse_eps(adv["eps"], where="train.adv.eps")
        if adv["alpha"] is not None:
            parse_eps(adv["alpha"], where="train.adv.alpha")
    if cfg["name"] is not None and not isinstance(cfg["name"], str):
        raise ConfigError(f"name: must be a string (or null), got {cfg['name']!r}")
    out = cfg["output"]["dir"]
    if not isinstance(out, str) or not out.strip():
        raise ConfigError(f"output.dir: must be a folder path, got {out!r}")
    init = cfg["model"]["init_from"]
    if isinstance(init, PathLike):  # from Python, a Path is as good as a string
        init = cfg["model"]["init_from"] = str(init)
    if init is not None and (not isinstance(init, str) or not init.strip()):
        raise ConfigError(f"model.init_from: must be a run directory or checkpoint path (or null), got {init!r}")
    kwargs = cfg["model"].get("kwargs")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise ConfigError(f"model.kwargs: must be a mapping of keyword arguments, got {kwargs!r}")


def _check_keys(cfg: dict[str, Any], ref: dict[str, Any], prefix: str) -> None:
    for k, v in cfg.items():
        path = f"{prefix}{k}"
        if path in OPEN_SECTIONS:
            continue
        if k not in ref:
            raise ConfigError(f"{path}: unknown config key (known here: {', '.join(sorted(ref))}){unknown_key_hint(k)}")
        if isinstance(ref[k], dict) and ref[k]:
            if not isinstance(v, dict):
                raise ConfigError(f"{path}: must be a mapping")
            _check_keys(v, ref[k], path + ".")


def dump_config(cfg: dict[str, Any]) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
