"""A benchmark suite: one YAML file naming models x dataset compositions x seeds, plus attack and cost settings.

It is parsed strictly (an unknown key anywhere is a one-line ``ConfigError`` naming the file and the key's path)
and expanded into *jobs*: one fully resolved training config per (model, composition, seed), each keyed by the
stable hash of that config, so a finished job is recognised again whatever folder or sitting it ran in.

Schema (every key but ``models``, ``compositions`` and ``base`` is optional)::

    name: cpu                       # default: the file's stem
    description: ...
    expected_wall_time: "about 9 h on 2 CPU cores"
    save_results: true              # write finished-run records to benchmarks/results (never with --quick)
    base: configs/pneumonia_breast.yaml   # a config file, or an inline config mapping
    config: {train: {epochs: 4}}    # patch merged into every job's config
    models: [mail, {name: mail, label: mail_small, kwargs: {widths: [16, 32, 64, 128]}}]
    compositions: [configs/pneumonia_breast.yaml, {name: pb, data: {...}}, {name: pbr, config: FILE,
                   overrides: {train: {loss_weights: [1, 1, 1]}}}]   # overrides: this composition's patch
    data: {subset: {train: 256}}    # patch merged into every composition's data section
    seeds: [0, 1, 2]
    attacks: {names: [pgd], eps: [1/255, 4/255], steps: 10, restarts: 1, eot: 1, subset: 256}  # or null
    cost: {sizes: null, threads: 2, batch: 64, latency_iters: 20, batch_iters: 3, warmup: 2}  # or null
    quick: {data: ..., config: ..., seeds: ..., models: ..., attacks: ..., cost: ...}  # merged in by --quick

A model's ``kwargs`` are merged over the base config's ``model.kwargs`` (so a shared ``stem`` carries over).
A composition given as a config file contributes only its ``data`` section; training settings come from ``base``
and ``config``.
"""
from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from mailnet.bench.hashing import config_hash, stable_hash
from mailnet.config import read_yaml_mapping
from mailnet.errors import ConfigError

TOP_KEYS = ("name", "description", "expected_wall_time", "save_results", "base", "config", "models", "compositions", "data",
            "seeds", "attacks", "cost", "quick")
QUICK_KEYS = ("config", "data", "seeds", "models", "compositions", "attacks", "cost")
MODEL_KEYS = ("name", "label", "kwargs")
COMPOSITION_KEYS = ("name", "config", "data", "overrides")
ATTACK_DEFAULTS: dict[str, Any] = {"names": ["pgd"], "eps": ["1/255", "2/255", "4/255", "8/255"], "steps": 10,
                                   "restarts": 1, "eot": 1, "subset": 256, "batch_size": 128, "options": {}}
COST_DEFAULTS: dict[str, Any] = {"sizes": None, "threads": 2, "batch": 64, "latency_iters": 20, "batch_iters": 3,
                                 "warmup": 2}


@dataclass(frozen=True)
class ModelEntry:
    """One model of the suite: a registry name, a label for tables, and constructor arguments."""

    label: str
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Composition:
    """One dataset composition: a name for tables and a data-layer ``data:`` section."""

    name: str
    data: dict[str, Any]
    source: str  # where it came from (a file, or "inline")
    overrides: dict[str, Any] = field(default_factory=dict)  # config patch for this composition's jobs


@dataclass(frozen=True)
class Job:
    """One training run: (model, composition, seed) with its resolved config and its hash."""

    model: ModelEntry
    composition: Composition
    seed: int
    cfg: dict[str, Any]
    key: str

    @property
    def label(self) -> str:
        return f"{self.composition.name}/{self.model.label}/seed{self.seed}"


@dataclass
class Suite:
    """A parsed, validated suite (with its ``quick:`` section already applied when asked for)."""

    name: str
    path: Path
    description: str
    expected_wall_time: str
    base: dict[str, Any]
    base_source: str
    config_patch: dict[str, Any]
    models: list[ModelEntry]
    compositions: list[Composition]
    data_patch: dict[str, Any]
    seeds: list[int]
    attacks: dict[str, Any] | None
    cost: dict[str, Any] | None
    quick: bool
    has_quick: bool
    save_results: bool = True

    def jobs(self) -> list[Job]:
        return expand(self)


# ------------------------------------------------------------------------------------------------------ loading


def load_suite(path: str | Path, quick: bool = False) -> Suite:
    """Read, validate and (with ``quick``) shrink a suite file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: suite file not found")
    return parse_suite(read_yaml_mapping(p), p, quick=quick)


def parse_suite(raw: dict[str, Any], path: Path, quick: bool = False) -> Suite:
    where = str(path)
    _known(raw, TOP_KEYS, where, "")
    has_quick = raw.get("quick") is not None
    if quick:
        if not has_quick:
            raise ConfigError(f"{where}: --quick asked for but the suite has no quick: section")
        q = _mapping(raw["quick"], where, "quick")
        _known(q, QUICK_KEYS, where, "quick.")
        raw = {**raw, **{k: (deep_merge(raw.get(k), v) if k in ("config", "data", "attacks", "cost")
                             and isinstance(raw.get(k), dict) and isinstance(v, dict) else v)
                         for k, v in q.items()}}
    if isinstance(raw.get("config"), dict) and "data" in raw["config"]:  # it would be replaced by the compositions'
        raise ConfigError(f"{where}: config.data: the data of every job comes from its composition; put changes to "
                          "it in the suite's top-level data: section (or quick.data:)")
    base, base_source = _base(raw.get("base"), path)
    name = raw.get("name") or path.stem
    if not isinstance(name, str):
        raise ConfigError(f"{where}: name: must be a string")
    models = _models(raw.get("models"), where)
    compositions = _compositions(raw.get("compositions"), path)
    suite = Suite(
        name=name, path=path, description=str(raw.get("description") or ""),
        expected_wall_time=str(raw.get("expected_wall_time") or ""),
        base=base, base_source=base_source,
        config_patch=_mapping(raw.get("config") or {}, where, "config"),
        models=models, compositions=compositions,
        data_patch=_mapping(raw.get("data") or {}, where, "data"),
        seeds=_seeds(raw.get("seeds", [0]), where),
        attacks=_attacks(raw.get("attacks"), where), cost=_cost(raw.get("cost", {}), where),
        quick=quick, has_quick=has_quick, save_results=_bool(raw.get("save_results", True), where, "save_results"),
    )
    expand(suite)  # resolve every job now: a bad key fails before hours of training, not after
    return suite


def _base(value: Any, path: Path) -> tuple[dict[str, Any], str]:
    where = str(path)
    if value is None:
        raise ConfigError(f"{where}: base: missing (a config file such as configs/pneumonia_breast.yaml, "
                          "or an inline config mapping)")
    if isinstance(value, dict):
        return copy.deepcopy(value), "inline"
    if isinstance(value, str):
        f = resolve_file(value, path, "base")
        cfg = read_yaml_mapping(f, f"{where}: base: {f}")
        cfg.setdefault("name", f.stem)
        return cfg, str(value)
    raise ConfigError(f"{where}: base: must be a config file path or a mapping, got {type(value).__name__}")


def _models(value: Any, where: str) -> list[ModelEntry]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: models: must be a non-empty list of model names or {{name, label, kwargs}}")
    out: list[ModelEntry] = []
    for i, m in enumerate(value):
        at = f"models[{i}]"
        if isinstance(m, str):
            out.append(ModelEntry(label=m, name=m, kwargs={}))
            continue
        m = _mapping(m, where, at)
        _known(m, MODEL_KEYS, where, at + ".")
        if not isinstance(m.get("name"), str):
            raise ConfigError(f"{where}: {at}.name: a registered model name is required")
        kwargs = _mapping(m.get("kwargs") or {}, where, at + ".kwargs")
        label = m.get("label") or m["name"]
        out.append(ModelEntry(label=str(label), name=m["name"], kwargs=kwargs))
    _unique([m.label for m in out], where, "models", "label")
    _check_registered(out, where)
    return out


def _check_registered(models: list[ModelEntry], where: str) -> None:
    from mailnet.models import list_models

    known = list_models()
    for i, m in enumerate(models):
        if m.name not in known:
            raise ConfigError(f"{where}: models[{i}]: unknown model {m.name!r} (registered: {', '.join(known)})")


def _compositions(value: Any, path: Path) -> list[Composition]:
    where = str(path)
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: compositions: must be a non-empty list of config files or {{name, data}}")
    out: list[Composition] = []
    for i, c in enumerate(value):
        at = f"compositions[{i}]"
        if isinstance(c, str):
            c = {"config": c}
        c = _mapping(c, where, at)
        _known(c, COMPOSITION_KEYS, where, at + ".")
        if ("config" in c) == ("data" in c):
            raise ConfigError(f"{where}: {at}: give exactly one of config: (a config file) or data: (a section)")
        if "config" in c:
            f = resolve_file(c["config"], path, at + ".config")
            cfg = read_yaml_mapping(f, f"{where}: {at}.config: {f}")
            data = cfg.get("data")
            if not isinstance(data, dict) or not data:
                raise ConfigError(f"{where}: {at}.config: {f} has no data: section")
            name, source = c.get("name") or cfg.get("name") or f.stem, str(c["config"])
        else:
            data = _mapping(c["data"], where, at + ".data")
            if not c.get("name"):
                raise ConfigError(f"{where}: {at}.name: an inline composition needs a name")
            name, source = c["name"], "inline"
        overrides = _mapping(c.get("overrides") or {}, where, at + ".overrides")
        if "data" in overrides:
            raise ConfigError(f"{where}: {at}.overrides: put data settings in the composition's data, not overrides")
        out.append(Composition(name=str(name), data=copy.deepcopy(data), source=source,
                               overrides=copy.deepcopy(overrides)))
    _unique([c.name for c in out], where, "compositions", "name")
    return out


def _seeds(value: Any, where: str) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if (not isinstance(value, list) or not value
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)):
        raise ConfigError(f"{where}: seeds: must be a non-empty list of non-negative integers, got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: seeds: {value} repeats a seed")
    return list(value)


def _attacks(value: Any, where: str) -> dict[str, Any] | None:
    if value is None or value is False:
        return None
    a = deep_merge(ATTACK_DEFAULTS, _mapping(value, where, "attacks"))
    _known(a, tuple(ATTACK_DEFAULTS), where, "attacks.")
    if isinstance(a["names"], str):
        a["names"] = [a["names"]]
    if not isinstance(a["names"], list) or not a["names"] or not all(isinstance(n, str) for n in a["names"]):
        raise ConfigError(f"{where}: attacks.names: must be a non-empty list of attack names")
    if not isinstance(a["eps"], list) or not a["eps"]:
        raise ConfigError(f"{where}: attacks.eps: must be a non-empty list such as [1/255, 4/255]")
    a["eps"] = [str(e) for e in a["eps"]]
    _check_eps(a["eps"], where)
    for key in ("steps", "restarts", "eot", "batch_size"):
        _positive_int(a[key], where, f"attacks.{key}")
    if a["subset"] is not None:
        _positive_int(a["subset"], where, "attacks.subset")
    a["options"] = _mapping(a["options"] or {}, where, "attacks.options")
    _check_attack_options(a, where)
    return a


def _check_attack_options(a: dict[str, Any], where: str) -> None:
    """Attack names and ``options`` keys are checked against the attack suite itself (when it is installed)."""
    try:
        from mailnet.attacks.suite import ATTACKS

        from mailnet.bench.stages import attack_option_names
        allowed = attack_option_names()
    except ImportError:
        return
    for n in a["names"]:
        if n not in ATTACKS:
            raise ConfigError(f"{where}: attacks.names: unknown attack {n!r} (known: {', '.join(ATTACKS)})")
    for k in a["options"]:
        if k not in allowed:
            raise ConfigError(f"{where}: attacks.options.{k}: unknown attack option (known: {', '.join(allowed)})")


def _check_eps(eps: list[str], where: str) -> None:
    """Reject an unreadable epsilon now, not after the training."""
    for e in eps:
        eps_value(e, where=f"{where}: attacks.eps")


def eps_value(text: str, where: str = "eps") -> float:
    """``'4/255'`` -> 0.0157 (the attack suite's parser: ``a/b``, a pixel fraction, or a number >= 1 in /255)."""
    from mailnet.attacks.eps import parse_eps

    return parse_eps(text, unit_255=False, where=where)


def _cost(value: Any, where: str) -> dict[str, Any] | None:
    if value is None or value is False:
        return None
    c = deep_merge(COST_DEFAULTS, _mapping(value, where, "cost"))
    _known(c, tuple(COST_DEFAULTS), where, "cost.")
    if c["sizes"] is not None:
        if isinstance(c["sizes"], int):
            c["sizes"] = [c["sizes"]]
        if not isinstance(c["sizes"], list) or not c["sizes"]:
            raise ConfigError(f"{where}: cost.sizes: must be null (the data's size) or a list of image sizes")
        for s in c["sizes"]:
            _positive_int(s, where, "cost.sizes")
    for key in ("threads", "batch", "latency_iters", "batch_iters"):
        _positive_int(c[key], where, f"cost.{key}")
    if not isinstance(c["warmup"], int) or c["warmup"] < 0:
        raise ConfigError(f"{where}: cost.warmup: must be a non-negative integer, got {c['warmup']!r}")
    return c


# ------------------------------------------------------------------------------------------------------ expansion


def expand(suite: Suite) -> list[Job]:
    """Every (seed, composition, model) job, seed-major so that a half-finished suite already covers every model."""
    jobs: list[Job] = []
    for seed in suite.seeds:
        for comp in suite.compositions:
            for model in suite.models:
                cfg = resolve_job_config(suite, model, comp, seed)
                jobs.append(Job(model=model, composition=comp, seed=seed, cfg=cfg, key=config_hash(cfg)))
    return jobs


def resolve_job_config(suite: Suite, model: ModelEntry, comp: Composition, seed: int) -> dict[str, Any]:
    """base <- config patch <- composition data (+ data patch) <- model <- seed, then defaults and validation."""
    from mailnet.config import DEFAULTS, merge, validate

    user = deep_merge(deep_merge(suite.base, suite.config_patch), comp.overrides)
    user["data"] = deep_merge(comp.data, suite.data_patch)
    model_section = _mapping(user.get("model") or {}, str(suite.path), "base model")
    base_kwargs = _mapping(model_section.get("kwargs") or {}, str(suite.path), "base model.kwargs")
    user["model"] = {**model_section, "name": model.name, "kwargs": deep_merge(base_kwargs, model.kwargs)}
    user["seed"] = seed
    user["name"] = f"{suite.name}-{comp.name}-{model.label}-seed{seed}"
    cfg = merge(DEFAULTS, user)
    try:
        validate(cfg)
        _validate_data(cfg["data"])
        _check_loss_weights(cfg)
    except ConfigError as e:
        raise ConfigError(f"{suite.path}: job {comp.name}/{model.label}/seed{seed}: {e}") from None
    if cfg["model"]["init_from"] is not None:  # one source cannot start every model of a comparison
        raise ConfigError(f"{suite.path}: model.init_from: a suite compares models trained from scratch; start a "
                          "run from another's weights with `mailnet train --init-from`")
    return cfg


def _validate_data(data: dict[str, Any]) -> None:
    """The data layer's own schema check (no files are opened)."""
    try:
        from mailnet.data import parse_data_config
    except ImportError:  # data layer not installed in this checkout
        return
    parse_data_config(data)


def _check_loss_weights(cfg: dict[str, Any]) -> None:
    """One weight per task: a base written for two modalities must not silently meet a three-modality composition."""
    weights, data = cfg["train"].get("loss_weights"), cfg["data"]
    if weights is None or data.get("mode", "unpaired") != "unpaired" or not isinstance(data.get("modalities"), list):
        return
    if len(weights) != len(data["modalities"]):
        raise ConfigError(f"train.loss_weights: {len(weights)} weights for {len(data['modalities'])} modalities "
                          "(set them per composition with overrides: {train: {loss_weights: [...]}})")


def selected(label: str, only: list[str]) -> bool:
    """Whether ``--only`` patterns (shell-style, matched against ``composition/model/seedN``) pick this run."""
    return not only or any(fnmatch.fnmatchcase(label, p) for p in only)


def check_models(jobs: list[Job], where: str) -> None:
    """Build each selected (composition, model) once, with stand-in shapes, so that a bad ``kwargs`` value (an
    unknown argument, a width of 0, an RPF fraction of 2) fails when the bench starts, not hours later when its job
    is reached. The real shapes come from the data, which is only read when the job runs."""
    import torch

    from mailnet.errors import MailnetError
    from mailnet.models import create_model

    seen: set[tuple[str, str]] = set()
    for job in jobs:
        if (job.composition.name, job.model.label) in seen:
            continue
        seen.add((job.composition.name, job.model.label))
        data, model = job.cfg["data"], job.cfg["model"]
        mods = data.get("modalities") if isinstance(data.get("modalities"), list) else [{}, {}]
        tasks = data.get("tasks") if data.get("mode") == "paired" and isinstance(data.get("tasks"), list) else mods
        size = int(data.get("size") or next((m.get("size") for m in mods if m.get("size")), None) or 28)
        shapes = {"in_chans": [3] * len(mods), "num_classes": [2] * len(tasks), "img_size": size}
        kwargs = {k: v for k, v in (model.get("kwargs") or {}).items() if k not in shapes}
        try:
            with torch.random.fork_rng(devices=[]):  # building draws random weights: leave the caller's stream
                create_model(model["name"], **shapes, **kwargs)
        except (MailnetError, TypeError, ValueError) as e:
            raise ConfigError(f"{where}: job {job.composition.name}/{job.model.label}: model {model['name']} with kwargs "
                              f"{kwargs}: {e}") from None


def attack_key(settings: dict[str, Any]) -> str:
    """Attack results are keyed by their settings too: changing eps or steps re-attacks, never retrains."""
    return stable_hash({"attacks": settings})


# ------------------------------------------------------------------------------------------------------ helpers


def deep_merge(base: Any, patch: Any) -> Any:
    """``patch`` over ``base``: mappings merge key by key, anything else (lists included) is replaced."""
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(base)
    for k, v in patch.items():
        out[k] = deep_merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else copy.deepcopy(v)
    return out


def resolve_file(value: Any, suite_path: Path, at: str) -> Path:
    """A path as given (relative to the working directory), else relative to the suite file or its parent."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{suite_path}: {at}: must be a file path")
    p = Path(value).expanduser()
    candidates = [p] if p.is_absolute() else [p, suite_path.parent / p, suite_path.parent.parent / p]
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(f"{suite_path}: {at}: file {value!r} not found (looked in the working directory and beside "
                      "the suite)")


def _known(d: dict[str, Any], keys: tuple[str, ...], where: str, prefix: str) -> None:
    for k in d:
        if k not in keys:
            raise ConfigError(f"{where}: {prefix}{k}: unknown suite key (known here: {', '.join(keys)})")


def _mapping(value: Any, where: str, at: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {at}: must be a mapping, got {type(value).__name__}")
    return value


def _bool(value: Any, where: str, at: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {at}: must be true or false, got {value!r}")
    return value


def _positive_int(value: Any, where: str, at: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{where}: {at}: must be a positive integer, got {value!r}")


def _unique(names: list[str], where: str, section: str, what: str) -> None:
    seen = set()
    for n in names:
        if n in seen:
            raise ConfigError(f"{where}: {section}: {what} {n!r} appears twice (give entries distinct {what}s)")
        seen.add(n)
