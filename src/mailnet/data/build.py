"""``build_data``: from the ``data:`` config section to a ``MultimodalData`` ready for the engine."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from mailnet.data.compose import MultimodalData
from mailnet.data.config import DataCfg, ModalityCfg, parse_data_config
from mailnet.data.dataset import ModalityRuntime, TaskRuntime
from mailnet.data.manifest import check_manifest, manifest_splits
from mailnet.data.plan import seeded_split, seeded_subset
from mailnet.data.sources.base import SPLITS, ImageSource
from mailnet.data.sources.csv_manifest import CsvSource
from mailnet.data.sources.image_folder import ImageFolderSource
from mailnet.data.sources.medmnist_npz import (MEDMNIST_SIZES, MedMNISTSource, available_sizes, choose_size,
                                               find_npz)
from mailnet.data.sources.paired_csv import PairedCsv, PairedTaskDef
from mailnet.data.types import ModalitySpec, TaskSpec
from mailnet.errors import DataError, MailnetWarning
from mailnet.paths import resolve_data_root


def build_data(cfg: dict, *, data_root: str | os.PathLike | None = None, seed: int = 0,
               manifest: dict | None = None) -> MultimodalData:
    """Validate ``cfg`` (the ``data:`` section), open every source and fix the splits.

    ``manifest`` (from ``load_manifest``) replaces split derivation, the pairing seed and the equalisation policy
    with the recorded ones, so the run sees exactly the recorded data.
    """
    dc = parse_data_config(cfg)
    root = resolve_data_root(data_root or dc.root)
    # relative paths of a run made elsewhere: its own working directory is also tried, so evaluate / attack /
    # resume work from any directory (runs recorded before "workdir" existed try this one only)
    workdir = str(manifest.get("workdir") or Path.cwd()) if manifest is not None else str(Path.cwd())
    locate = Locator(root, [Path.cwd(), Path(workdir)])
    if manifest is not None:
        check_manifest(manifest)
        if manifest["mode"] != dc.mode:
            raise DataError(f"manifest is for mode {manifest['mode']!r} but the config says {dc.mode!r}")
        seed, equalize = int(manifest["seed"]), manifest["equalize"]
        split_seed = int(manifest.get("split_seed", dc.split_seed))
        subset = manifest.get("subset")
    else:
        equalize, split_seed, subset = dc.equalize, dc.split_seed, dc.subset
    builder = _build_paired if dc.mode == "paired" else _build_unpaired
    mods, tasks, extra = builder(dc, locate, split_seed, subset, manifest)
    extra = {**extra, "workdir": workdir}
    for mod in mods:
        for split in SPLITS:
            if mod.split_size(split) == 0:
                raise DataError(f"modality {mod.spec.name!r} ({mod.source.info().location}): split {split!r} has zero samples")
    return MultimodalData(mode=dc.mode, modalities=mods, tasks=tasks, seed=seed, equalize=equalize,
                          split_seed=split_seed, subset=subset, config=dc.raw, extra=extra)


class Locator:
    """Where a path of the data section points: absolute as written; relative against the working directory (then
    the one the run was made in), then against the data root. Not found anywhere, the error names the config key
    and every place tried, not only the last."""

    def __init__(self, root: Path, workdirs: list[Path]) -> None:
        self.root = root
        self.workdirs = list(dict.fromkeys(workdirs))

    def __call__(self, path: str, key: str) -> Path:
        p = Path(path).expanduser()
        tried = [p] if p.is_absolute() else [d / p for d in self.workdirs] + [self.root / p]
        for candidate in tried:
            if candidate.exists():
                return candidate
        raise DataError(f"{key}: {path!r} not found (tried {', '.join(str(t) for t in tried)})")


def _medmnist_modalities(cfg: dict, data_root: str | os.PathLike | None) -> Iterator[tuple[ModalityCfg, Path]]:
    """(modality, data root) for each MedMNIST modality of ``cfg``, without reading any file."""
    dc = parse_data_config(cfg)
    root = resolve_data_root(data_root or dc.root)
    for mc in dc.modalities:
        if mc.source == "medmnist":
            yield mc, root


def upsampling_notes(cfg: dict, data_root: str | os.PathLike | None = None) -> list[str]:
    """What building ``cfg`` would read smaller than asked (MedMNIST files of a smaller size, upsampled), found
    from the file names alone, so a long benchmark can say so before it starts: such runs are not the protocol
    their size promises (the paper's 128 px from 28 px files, say). An explicit ``source_size`` means it."""
    notes = []
    for mc, root in _medmnist_modalities(cfg, data_root):
        if mc.options.get("source_size") is not None:
            continue
        flag = mc.options["flag"]
        have = available_sizes(root, flag)
        size = choose_size(root, flag, mc.size, None)
        if have and size < mc.size:
            notes.append(f"modality {mc.name!r}: no {flag} file of {mc.size} px or more under {root} (have "
                         f"{', '.join(map(str, have))} px): its images would be upsampled from {size} px")
    return notes


def medmnist_files(cfg: dict, data_root: str | os.PathLike | None = None) -> dict[str, tuple[str, int]]:
    """Per MedMNIST modality, the file building ``cfg`` would read under this data root and its size in px (only
    modalities whose file exists): what a stored benchmark record is compared with before it is reused."""
    out = {}
    for mc, root in _medmnist_modalities(cfg, data_root):
        size = choose_size(root, mc.options["flag"], mc.size, mc.options.get("source_size"))
        path = find_npz(root, mc.options["flag"], size)
        if path is not None:
            out[mc.name] = (path.name, size)
    return out


def _open_source(mc: ModalityCfg, locate: Locator) -> ImageSource:
    o, root = mc.options, locate.root
    if mc.source == "medmnist":
        size = choose_size(root, o["flag"], mc.size, o.get("source_size"))
        # MedMNIST comes in 28/64/128/224 px: the smallest file that needs no upsampling
        fetch = min((s for s in MEDMNIST_SIZES if s >= mc.size), default=max(MEDMNIST_SIZES))
        if size < fetch and o["download"] and o.get("source_size") is None:
            size = fetch  # asked to download: fetch the right file rather than upsample a smaller one
        source = MedMNISTSource(o["flag"], root, size=size, download=o["download"])
        if size < mc.size and o.get("source_size") is None:
            warnings.warn(f"modality {mc.name!r}: no {o['flag']} file of {mc.size} px or more under {root}; reading "
                          f"{source.path} ({size} px) upsampled to {mc.size} px, which adds no detail (get the "
                          f"{fetch} px one with `mailnet data download {o['flag']} --size {fetch}`, or set "
                          f"source_size: {size} to mean it)", MailnetWarning, stacklevel=2)
        return source
    if mc.source == "folder":
        return ImageFolderSource(locate(o["root"], f"{mc.where}.root"), task_type=o.get("task_type"),
                                 class_names=list(o["class_names"]) if o.get("class_names") else None)
    return CsvSource(locate(o["csv"], f"{mc.where}.csv"), path_column=o["path_column"],
                     label_column=o.get("label_column"), label_columns=o.get("label_columns"),
                     split_column=o.get("split_column"),
                     image_root=locate(o["image_root"], f"{mc.where}.image_root") if o.get("image_root") else None,
                     task_type=o.get("task_type"), num_classes=o.get("num_classes"), class_names=o.get("class_names"))


def derive_splits(pools: dict[str, int], labels: dict[str, np.ndarray], fractions: dict[str, float],
                  split_seed: int) -> dict[str, tuple[str, np.ndarray]]:
    """Official splits when the source has them; missing val/test carved out of train (or out of ``all``) by a
    seeded, class-stratified split."""
    if "all" in pools:
        parts = seeded_split(pools["all"], fractions, split_seed, labels.get("all"))
        return {s: ("all", parts[s]) for s in SPLITS}
    out = {s: (s, np.arange(pools[s], dtype=np.int64)) for s in SPLITS if s in pools}
    missing = [s for s in ("val", "test") if s not in pools]
    if missing:
        want = {s: fractions[s] for s in missing}
        parts = seeded_split(pools["train"], want, split_seed, labels.get("train"))
        out["train"] = ("train", parts["train"])
        for s in missing:
            out[s] = ("train", parts[s])
    return out


def _apply_subset(splits: dict[str, tuple[str, np.ndarray]], subset: dict | None, split_seed: int,
                  m: int) -> dict[str, tuple[str, np.ndarray]]:
    if not subset:
        return splits
    return {s: (pool, seeded_subset(idx, int(subset[s]), split_seed, m, s) if s in subset else idx)
            for s, (pool, idx) in splits.items()}


def _channels(mc: ModalityCfg, native: int, src: ImageSource) -> int:
    """The modality's input channels; ``keep`` needs one channel count across its files (else the first file's
    would silently decide, turning colour images grey or the reverse)."""
    if mc.channels != "keep":
        return int(mc.channels)
    met = sorted(src.channel_counts or {native})
    if len(met) > 1:
        raise DataError(f"{mc.where}.channels: 'keep' but {src.info().location} holds both grey (1-channel) and "
                        "colour (3-channel) images; set channels: 1 or 3 to convert them all")
    return met[0]


def _build_unpaired(dc: DataCfg, locate: Locator, split_seed: int, subset: dict | None, manifest: dict | None):
    mods: list[ModalityRuntime] = []
    tasks: list[TaskRuntime] = []
    for m, mc in enumerate(dc.modalities):
        src = _open_source(mc, locate)
        info = src.info()
        if sum(info.pools.values()) == 0:
            raise DataError(f"modality {mc.name!r} ({info.location}): zero samples")
        if manifest is not None:
            splits = manifest_splits(manifest, m, mc.name, info.pools, fingerprint=src.fingerprint)
        else:
            fractions = mc.options.get("split_fractions", dc.split_fractions)
            all_labels = {p: src.labels(p) for p in info.pools}
            full = derive_splits(info.pools, all_labels, fractions, split_seed)
            splits = _apply_subset(full, subset, split_seed, m)
        spec = ModalitySpec(name=mc.name, in_chans=_channels(mc, info.channels, src), img_size=mc.size)
        mods.append(ModalityRuntime(spec, src, mc.augment, splits, info.kind))
        task_type = mc.options.get("task_type") or info.task_type
        if task_type != info.task_type:
            _check_task_type(task_type, info.task_type, info.num_classes, f"data.modalities[{m}].task_type")
        tspec = TaskSpec(name=mc.name, task_type=task_type, num_classes=info.num_classes,
                         class_names=tuple(info.class_names), modality=m)
        labels = {s: src.labels(pool)[idx] for s, (pool, idx) in splits.items()}
        if manifest is None and not _classes_declared(mc):
            keys = f"{mc.where}.class_names" + (" / num_classes" if mc.source == "csv" else "")
            check_trained_classes(tspec, labels["train"], src.labels(full["train"][0])[full["train"][1]],
                                  _class_counts([src.labels(p) for p in info.pools]), split_seed,
                                  where=f"modality {mc.name!r} ({info.location})", keys=keys)
        tasks.append(TaskRuntime(tspec, labels))
    return mods, tasks, {}


def _classes_declared(mc: ModalityCfg) -> bool:
    """Whether the config fixes the modality's classes (MedMNIST's come with the dataset), so a class without
    training samples is meant rather than a typo in the data."""
    o = mc.options
    return mc.source == "medmnist" or bool(o.get("class_names") or o.get("num_classes") or o.get("label_columns"))


def check_trained_classes(spec: TaskSpec, train: np.ndarray, train_before_subset: np.ndarray, counts: np.ndarray,
                          split_seed: int, *, where: str, keys: str) -> None:
    """Every class inferred from the data needs a training sample after the split and subset: a class the model
    never sees is a head output that is never learned, scored with an AUC of nan. Sources already refuse a class
    without a train row of its own; this catches the ones that the seeded split of a pool, or ``data.subset``,
    left out of train. ``counts``: the class's samples in the whole source."""
    if spec.task_type == "multi-label":
        return
    for c in range(spec.num_classes):
        if (train == c).any():
            continue
        name = spec.class_names[c] if c < len(spec.class_names) else str(c)
        total = int(counts[c]) if c < len(counts) else 0
        if (train_before_subset == c).any():
            how = f"data.subset.train kept none of its {int((train_before_subset == c).sum())} training sample(s)"
        else:
            how = f"the seeded split (data.split_seed {split_seed}) put all {total} of its sample(s) in val/test"
        raise DataError(f"{where}: class {name!r} has no sample in the train split ({how}), so the model could never "
                        "learn it; add samples of it (or remove the ones there), change data.split_seed / "
                        f"split_fractions / subset, or declare the classes ({keys}) to keep it as is")


def _class_counts(labels: list[np.ndarray]) -> np.ndarray:
    """Samples per class over every pool of a single-label task."""
    flat = np.concatenate([np.asarray(y).reshape(-1) for y in labels]) if labels else np.zeros(0, np.int64)
    return np.bincount(flat.astype(np.int64)) if flat.size else np.zeros(0, np.int64)


def _check_task_type(asked: str, native: str, num_classes: int, where: str) -> None:
    """A task type set over the source's own must fit its labels: the labels' shape is the source's (one 0/1 column
    per class for multi-label, one class index otherwise), and a binary head has 2 classes."""
    if (asked == "multi-label") != (native == "multi-label"):
        raise DataError(f"{where}: {asked!r} does not fit labels that are {native!r} (one "
                        f"{'0/1 column per class' if native == 'multi-label' else 'class index per sample'})")
    if asked == "binary" and num_classes != 2:
        raise DataError(f"{where}: 'binary' needs 2 classes, the labels have {num_classes}; use multi-class or ordinal")


def _build_paired(dc: DataCfg, locate: Locator, split_seed: int, subset: dict | None, manifest: dict | None):
    table = PairedCsv(
        locate(dc.manifest_csv, "data.manifest_csv"),
        modality_columns=[mc.options["column"] for mc in dc.modalities],
        tasks=[PairedTaskDef(t.name, t.column, t.columns, t.task_type, t.num_classes, t.class_names) for t in dc.tasks],
        split_column=dc.split_column,
        image_root=locate(dc.image_root, "data.image_root") if dc.image_root else None,
    )
    pools = table.pools()
    if manifest is not None:
        splits = manifest_splits(manifest, 0, dc.modalities[0].name, pools, fingerprint=table.sources[0].fingerprint)
        for m, mc in enumerate(dc.modalities[1:], start=1):
            other = manifest_splits(manifest, m, mc.name, pools)
            if any(not np.array_equal(other[s][1], splits[s][1]) for s in SPLITS):
                raise DataError(f"manifest: paired modality {mc.name!r} has different split rows than the first")
    else:
        first_task = {p: table.task_labels(0, p) for p in pools}
        full = derive_splits(pools, first_task, dc.split_fractions, split_seed)
        splits = _apply_subset(full, subset, split_seed, 0)
    mods = []
    for m, mc in enumerate(dc.modalities):
        src = table.sources[m]
        spec = ModalitySpec(name=mc.name, in_chans=_channels(mc, src.channels, src), img_size=mc.size)
        mods.append(ModalityRuntime(spec, src, mc.augment, dict(splits), "paired-csv"))
    tasks = []
    for t, (name, tt, k, names) in enumerate(table.task_info):
        labels = {s: table.task_labels(t, pool)[idx] for s, (pool, idx) in splits.items()}
        spec = TaskSpec(name=name, task_type=tt, num_classes=k, class_names=names)
        tc = dc.tasks[t]
        if manifest is None and not (tc.num_classes or tc.class_names or tc.columns):
            check_trained_classes(spec, labels["train"], table.task_labels(t, full["train"][0])[full["train"][1]],
                                  _class_counts([table.task_labels(t, p) for p in pools]), split_seed,
                                  where=f"task {name!r} ({table.path})",
                                  keys=f"data.tasks[{t}].class_names / num_classes")
        tasks.append(TaskRuntime(spec, labels))
    return mods, tasks, {"paired_csv": str(table.path)}
