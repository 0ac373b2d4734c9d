"""The ``data:`` section of a config: its schema, defaults and validation.

Every unknown key or bad value is a ``ConfigError`` naming its place (``data.modalities[1].flg: unknown key``),
so a typo never silently falls back to a default.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mailnet.data.augment import AugOp, parse_augment
from mailnet.data.plan import EQUALIZE_POLICIES
from mailnet.data.types import TASK_TYPES
from mailnet.errors import ConfigError, unknown_key_hint

MODES = ("unpaired", "paired")
SOURCES = ("medmnist", "folder", "csv")
DEFAULT_FRACTIONS = {"val": 0.1, "test": 0.2}

TOP_KEYS = {"mode", "size", "channels", "equalize", "subset", "split_seed", "split_fractions", "root", "download",
            "modalities", "tasks", "manifest_csv", "image_root", "split_column"}
COMMON_MOD_KEYS = {"name", "source", "channels", "size", "augment"}
SOURCE_KEYS = {
    "medmnist": {"flag", "source_size", "download", "task_type"},
    "folder": {"root", "task_type", "class_names", "split_fractions"},
    "csv": {"csv", "path_column", "label_column", "label_columns", "split_column", "image_root", "task_type",
            "num_classes", "class_names", "split_fractions"},
}
PAIRED_MOD_KEYS = {"name", "column", "channels", "size", "augment"}
TASK_KEYS = {"name", "column", "columns", "task_type", "num_classes", "class_names"}


@dataclass
class ModalityCfg:
    name: str
    source: str  # medmnist | folder | csv | paired
    channels: int | str  # 1, 3 or "keep"
    size: int
    augment: tuple[AugOp, ...]
    options: dict[str, Any] = field(default_factory=dict)  # source-specific keys, validated
    where: str = ""


@dataclass
class TaskCfg:
    name: str
    column: str | None
    columns: tuple[str, ...] | None
    task_type: str | None
    num_classes: int | None
    class_names: tuple[str, ...] | None


@dataclass
class DataCfg:
    mode: str
    size: int
    equalize: str
    subset: dict[str, int] | None
    split_seed: int
    split_fractions: dict[str, float]
    root: str | None
    download: bool
    modalities: list[ModalityCfg]
    tasks: list[TaskCfg]
    manifest_csv: str | None = None
    image_root: str | None = None
    split_column: str | None = None
    raw: dict = field(default_factory=dict)


def _unknown(d: dict, allowed: set[str], where: str) -> None:
    for k in d:
        if k not in allowed:
            raise ConfigError(f"{where}.{k}: unknown key (allowed: {', '.join(sorted(allowed))}){unknown_key_hint(k)}")


def _int(v: Any, where: str, *, minimum: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ConfigError(f"{where}: expected an integer >= {minimum}, got {v!r}")
    return v


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{where}: expected a non-empty string, got {v!r}")
    return v


def _choice(v: Any, options: tuple[str, ...], where: str) -> str:
    if v not in options:
        raise ConfigError(f"{where}: expected one of {', '.join(options)}, got {v!r}")
    return v


def _channels(v: Any, where: str) -> int | str:
    if v == "keep" or (isinstance(v, int) and not isinstance(v, bool) and v in (1, 3)):
        return v
    raise ConfigError(f"{where}: expected 1, 3 or 'keep', got {v!r}")


def _names(v: Any, where: str) -> tuple[str, ...] | None:
    if v is None:
        return None
    if not isinstance(v, (list, tuple)) or not v or not all(isinstance(x, (str, int)) for x in v):
        raise ConfigError(f"{where}: expected a list of names")
    return tuple(str(x) for x in v)


def _fractions(v: Any, where: str) -> dict[str, float]:
    if not isinstance(v, dict):
        raise ConfigError(f"{where}: expected a mapping like {{val: 0.1, test: 0.2}}")
    _unknown(v, {"val", "test"}, where)
    out = dict(DEFAULT_FRACTIONS)
    for k, x in v.items():
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 <= x < 1:
            raise ConfigError(f"{where}.{k}: expected a fraction in [0, 1), got {x!r}")
        out[k] = float(x)
    if out["val"] + out["test"] >= 1:
        raise ConfigError(f"{where}: val + test must leave some training data")
    return out


def _task_type(v: Any, where: str) -> str | None:
    return None if v is None else _choice(v, TASK_TYPES, where)


def _modality_keys(source: Any) -> set[str]:
    """The keys an unpaired modality may have: its source's, or every source's while the source is unknown (the
    source's own check then reports it)."""
    if isinstance(source, str) and source in SOURCE_KEYS:
        return COMMON_MOD_KEYS | SOURCE_KEYS[source]
    return COMMON_MOD_KEYS.union(*SOURCE_KEYS.values())


def _modality(d: Any, i: int, top: dict, mode: str) -> ModalityCfg:
    where = f"data.modalities[{i}]"
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping, got {d!r}")
    source = d.get("source", "medmnist" if "flag" in d else None)
    # a misspelt key first, before any value is read: `flg:` would otherwise be reported as a missing source
    _unknown(d, PAIRED_MOD_KEYS if mode == "paired" else _modality_keys(source), where)
    size = _int(d.get("size", top["size"]), f"{where}.size", minimum=1)
    channels = _channels(d.get("channels", top["channels"]), f"{where}.channels")
    augment = parse_augment(d.get("augment"), f"{where}.augment")
    if mode == "paired":
        column = _str(d.get("column"), f"{where}.column")
        name = _str(d.get("name", column), f"{where}.name")
        return ModalityCfg(name, "paired", channels, size, augment, {"column": column}, where)
    source = _choice(source, SOURCES, f"{where}.source")
    opts: dict[str, Any] = {}
    if source == "medmnist":
        opts["flag"] = _str(d.get("flag"), f"{where}.flag")
        if d.get("source_size") is not None:
            opts["source_size"] = _int(d["source_size"], f"{where}.source_size", minimum=1)
        opts["download"] = bool(d.get("download", top["download"]))
        default_name = opts["flag"]
    elif source == "folder":
        opts["root"] = _str(d.get("root"), f"{where}.root")
        opts["class_names"] = _names(d.get("class_names"), f"{where}.class_names")
        default_name = opts["root"].rstrip("/").split("/")[-1]
    else:
        opts["csv"] = _str(d.get("csv"), f"{where}.csv")
        opts["path_column"] = _str(d.get("path_column", "path"), f"{where}.path_column")
        if "label_columns" in d:
            cols = _names(d["label_columns"], f"{where}.label_columns")
            opts["label_columns"] = list(cols) if cols else None
            opts["label_column"] = None
        else:
            opts["label_column"] = _str(d.get("label_column", "label"), f"{where}.label_column")
        for k in ("split_column", "image_root"):
            if d.get(k) is not None:
                opts[k] = _str(d[k], f"{where}.{k}")
        if d.get("num_classes") is not None:
            opts["num_classes"] = _int(d["num_classes"], f"{where}.num_classes", minimum=1)
        names = _names(d.get("class_names"), f"{where}.class_names")
        opts["class_names"] = list(names) if names else None
        default_name = opts["csv"].rstrip("/").split("/")[-1].rsplit(".", 1)[0]
    if "task_type" in SOURCE_KEYS[source]:
        opts["task_type"] = _task_type(d.get("task_type"), f"{where}.task_type")
    if "split_fractions" in SOURCE_KEYS[source]:
        opts["split_fractions"] = _fractions(d["split_fractions"], f"{where}.split_fractions") \
            if "split_fractions" in d else top["split_fractions"]
    name = _str(d.get("name", default_name), f"{where}.name")
    return ModalityCfg(name, source, channels, size, augment, opts, where)


def _task(d: Any, i: int) -> TaskCfg:
    where = f"data.tasks[{i}]"
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping, got {d!r}")
    _unknown(d, TASK_KEYS, where)
    column = d.get("column")
    columns = _names(d.get("columns"), f"{where}.columns")
    if (column is None) == (columns is None):
        raise ConfigError(f"{where}: give exactly one of 'column' (one label) or 'columns' (multi-label 0/1 columns)")
    if column is not None:
        _str(column, f"{where}.column")
    name = _str(d.get("name", column or f"task{i}"), f"{where}.name")
    k = d.get("num_classes")
    return TaskCfg(name, column, columns, _task_type(d.get("task_type"), f"{where}.task_type"),
                   None if k is None else _int(k, f"{where}.num_classes", minimum=1),
                   _names(d.get("class_names"), f"{where}.class_names"))


def parse_data_config(cfg: Any) -> DataCfg:
    """Validate the ``data:`` mapping and fill in defaults."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"data: expected a mapping, got {type(cfg).__name__}")
    _unknown(cfg, TOP_KEYS, "data")
    mode = _choice(cfg.get("mode", "unpaired"), MODES, "data.mode")
    top = {
        "size": _int(cfg.get("size", 28), "data.size", minimum=1),
        "channels": _channels(cfg.get("channels", 3), "data.channels"),
        "download": bool(cfg.get("download", False)),
        "split_fractions": _fractions(cfg.get("split_fractions", {}), "data.split_fractions"),
    }
    equalize = _choice(cfg.get("equalize", "augment"), EQUALIZE_POLICIES, "data.equalize")
    subset = cfg.get("subset")
    if subset is not None:
        if not isinstance(subset, dict):
            raise ConfigError("data.subset: expected a mapping like {train: 256, val: 64, test: 64}")
        _unknown(subset, {"train", "val", "test"}, "data.subset")
        subset = {k: _int(v, f"data.subset.{k}", minimum=1) for k, v in subset.items() if v is not None} or None
    mods = cfg.get("modalities")
    if not isinstance(mods, list) or not mods:
        raise ConfigError("data.modalities: expected a non-empty list")
    modalities = [_modality(d, i, top, mode) for i, d in enumerate(mods)]
    names = [m.name for m in modalities]
    if len(set(names)) != len(names):
        raise ConfigError(f"data.modalities: names must be unique, got {names}")
    tasks: list[TaskCfg] = []
    manifest_csv = image_root = split_column = None
    if mode == "paired":
        manifest_csv = _str(cfg.get("manifest_csv"), "data.manifest_csv")
        image_root = None if cfg.get("image_root") is None else _str(cfg["image_root"], "data.image_root")
        split_column = None if cfg.get("split_column") is None else _str(cfg["split_column"], "data.split_column")
        raw_tasks = cfg.get("tasks")
        if not isinstance(raw_tasks, list) or not raw_tasks:
            raise ConfigError("data.tasks: paired mode needs a non-empty list of tasks")
        for k in ("equalize", "download"):  # accepted and ignored, they would let a user believe they act
            if k in cfg:
                raise ConfigError(f"data.{k}: only used in unpaired mode (paired rows are subjects from one CSV)")
        tasks = [_task(d, i) for i, d in enumerate(raw_tasks)]
        task_names = [t.name for t in tasks]
        if len(set(task_names)) != len(task_names):  # reports and predictions are keyed by task name
            raise ConfigError(f"data.tasks: names must be unique, got {task_names}")
    else:
        for k in ("manifest_csv", "image_root", "split_column", "tasks"):
            if k in cfg:
                raise ConfigError(f"data.{k}: only used in paired mode (data.mode: paired)")
    root = cfg.get("root")
    return DataCfg(mode, top["size"], equalize, subset, _int(cfg.get("split_seed", 0), "data.split_seed"),
                   top["split_fractions"], None if root is None else _str(root, "data.root"), top["download"],
                   modalities, tasks, manifest_csv, image_root, split_column, dict(cfg))
