"""docs/config.md stays in sync with the configuration schema in the code.

The expected keys come from the code's own constants (``DEFAULTS``, the data layer's key sets, the model
signatures), so a key added to the code without documentation, or documented but gone from the code, fails here.
Each key is looked up in the table of its own section: a ``batch_size`` documented under ``train`` does not count
for ``eval``. Every ```yaml block of the page must be a complete run config that loads and validates.
"""
from __future__ import annotations

import functools
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailnet.config import CHOICES, DEFAULTS, OPEN_SECTIONS, load_config
from mailnet.data import config as data_config
from mailnet.data.augment import AUGMENTATIONS
from mailnet.data.config import parse_data_config
from mailnet.data.plan import EQUALIZE_POLICIES
from mailnet.data.types import TASK_TYPES

DOC = Path(__file__).resolve().parents[1] / "docs" / "config.md"
FILLED_BY_TRAINER = ("in_chans", "num_classes", "img_size")
TOP_TITLE = "Top level"


# ---- reading the page -----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def doc_text() -> str:
    assert DOC.is_file(), f"{DOC} is missing"
    return DOC.read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def sections() -> dict[str, str]:
    """Heading title (without the #'s) -> the text up to the next heading of any level (code fences skipped)."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    in_fence = False
    for line in doc_text().splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        m = None if in_fence else re.match(r"^(#{1,6})\s+(.*?)\s*$", line)
        if m:
            title = m.group(2)
            assert title not in out, f"docs/config.md: heading {title!r} appears twice"
            current = out[title] = []
        elif current is not None:
            current.append(line)
    return {title: "\n".join(lines) for title, lines in out.items()}


def section(title: str) -> str:
    found = sections()
    assert title in found, f"docs/config.md has no heading {title!r} (headings: {sorted(found)})"
    return found[title]


def table_rows(body: str) -> list[list[str]]:
    """The cells of every table row under a heading, header and separator rows excluded."""
    rows = []
    for line in body.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if all(set(c) <= set("-: ") for c in cells) or cells[0] in ("key", "op"):
            continue
        rows.append(cells)
    return rows


def table_keys(title: str) -> list[str]:
    """First-column keys of the tables under a heading; each must be written as one backticked word."""
    keys = []
    for cells in table_rows(section(title)):
        m = re.fullmatch(r"`([^`]+)`", cells[0])
        assert m, f"docs/config.md, {title!r}: first cell {cells[0]!r} is not a backticked key"
        keys.append(m.group(1))
    assert len(keys) == len(set(keys)), f"docs/config.md, {title!r}: a key is listed twice: {keys}"
    return keys


def backticked(text: str) -> set[str]:
    return set(re.findall(r"`([^`\n]+)`", text))


def title_of(path: str) -> str:
    """The heading of a config section: ``Top level`` for the top, else the dotted path in backticks."""
    return TOP_TITLE if path == "" else f"`{path}`"


def yaml_blocks() -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", doc_text(), flags=re.S | re.M)


# ---- what the code accepts ------------------------------------------------------------------------------------


def defaults_by_section(node: dict[str, Any] = DEFAULTS, prefix: str = "") -> dict[str, set[str]]:
    """Section path -> its keys, from ``DEFAULTS``; free-form sections (``data``, ``model.kwargs``) are listed as
    keys of their parent but their contents are documented elsewhere."""
    out: dict[str, set[str]] = {prefix: set(node)}
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value and path not in OPEN_SECTIONS:
            out.update(defaults_by_section(value, path))
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _signature_defaults(fn, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {name: _plain(p.default) for name, p in inspect.signature(fn).parameters.items()
            if p.kind is not inspect.Parameter.VAR_KEYWORD and name not in ("self", *FILLED_BY_TRAINER, *skip)}


@functools.lru_cache(maxsize=1)
def model_kwargs() -> dict[str, dict[str, Any]]:
    """Registered model -> the ``model.kwargs`` it accepts, with their defaults, read from the code.

    ``mail`` and ``robust_mail`` pass their keyword arguments to ``MAIL.__init__`` (``robust_mail`` over
    ``ROBUST_DEFAULTS``), ``cascaded_fusion`` to the same constructor narrowed to its ``ALLOWED`` names; the
    ResNet-18 baselines and DRIFA take exactly their own signature's arguments."""
    from mailnet.models import baselines, cascaded, drifa, list_models
    from mailnet.models import mail as mail_module

    # model_name is set by the builders for error messages and refused from users (mail_module's ``internal``)
    mail_args = {k: v for k, v in _signature_defaults(mail_module.MAIL.__init__).items() if k != "model_name"}
    accepted = {
        "mail": {**_signature_defaults(mail_module.mail), **mail_args},
        "robust_mail": {**_signature_defaults(mail_module.robust_mail), **mail_args,
                        **{k: _plain(v) for k, v in mail_module.ROBUST_DEFAULTS.items()}},
        "cascaded_fusion": {**_signature_defaults(cascaded.cascaded_fusion),
                            **{k: v for k, v in mail_args.items() if k in cascaded.ALLOWED}},
        "resnet18_single": _signature_defaults(baselines.resnet18_single),
        "resnet18_late_fusion": _signature_defaults(baselines.resnet18_late_fusion),
        "drifa": _signature_defaults(drifa.drifa),
    }
    assert set(accepted) == set(list_models()), (
        "a model was registered or removed: document its model.kwargs in docs/config.md and list it here")
    return accepted


# ---- (1) every key of the code is documented in its section, and nothing else is ---------------------------


def _same_keys(title: str, expected: set[str]) -> None:
    documented = set(table_keys(title))
    missing, stale = sorted(set(expected) - documented), sorted(documented - set(expected))
    assert not missing, f"docs/config.md, {title}: undocumented key(s) {missing}"
    assert not stale, f"docs/config.md, {title}: documented key(s) the code does not have {stale}"


@pytest.mark.parametrize("path", sorted(defaults_by_section()), ids=lambda p: p or "top")
def test_defaults_sections_documented(path: str) -> None:
    _same_keys(title_of(path), defaults_by_section()[path])


DATA_SECTIONS = [
    ("`data`", data_config.TOP_KEYS),
    ("`data.modalities[]`: keys of every source", data_config.COMMON_MOD_KEYS),
    *[(f"`source: {source}`", keys) for source, keys in data_config.SOURCE_KEYS.items()],
    ("Paired data: `data.modalities[]`", data_config.PAIRED_MOD_KEYS),
    ("Paired data: `data.tasks[]`", data_config.TASK_KEYS),
]


@pytest.mark.parametrize(("title", "expected"), DATA_SECTIONS, ids=[t for t, _ in DATA_SECTIONS])
def test_data_sections_documented(title: str, expected: set[str]) -> None:
    _same_keys(title, expected)


def test_every_source_has_a_section() -> None:
    assert set(data_config.SOURCES) == set(data_config.SOURCE_KEYS)
    for source in data_config.SOURCES:
        section(f"`source: {source}`")


def test_every_key_appears_backticked() -> None:
    """The brief's plain form of the rule, over the whole page: each key as a `word`."""
    keys = set().union(*defaults_by_section().values(), data_config.TOP_KEYS, data_config.COMMON_MOD_KEYS,
                       *data_config.SOURCE_KEYS.values(), data_config.PAIRED_MOD_KEYS, data_config.TASK_KEYS)
    missing = sorted(keys - backticked(doc_text()))
    assert not missing, f"docs/config.md never mentions {missing} as `key`"


def test_model_kwargs_table_matches_the_models() -> None:
    """Rows are the union of every model's keyword arguments; a model's cell is ``-`` exactly where it rejects the
    key and otherwise holds its real default (as YAML)."""
    title = "`model.kwargs`"
    accepted = model_kwargs()
    header = next(line for line in section(title).splitlines() if line.startswith("| key |"))
    columns = [c.strip() for c in header.strip().strip("|").split("|")]
    column_of = {name: i for i, cell in enumerate(columns) for name in re.findall(r"`([^`]+)`", cell)}
    assert set(column_of) == set(accepted), f"{title}: the table's model columns {sorted(column_of)}"
    keys = table_keys(title)
    union = set().union(*accepted.values())
    assert set(keys) == union, (f"{title}: undocumented {sorted(union - set(keys))}, "
                                f"not accepted by any model {sorted(set(keys) - union)}")
    for cells in table_rows(section(title)):
        key = cells[0].strip("`")
        for model, i in column_of.items():
            cell = cells[i]
            if key not in accepted[model]:
                assert cell == "-", f"{title}: {model} does not accept {key!r}, but the table says {cell!r}"
                continue
            assert re.fullmatch(r"`[^`]+`", cell), f"{title}: {model}.{key}: default {cell!r} is not `backticked`"
            assert yaml.safe_load(cell.strip("`")) == accepted[model][key], (
                f"{title}: {model}.{key}: the table says {cell}, the code's default is {accepted[model][key]!r}")


def test_augmentations_documented() -> None:
    from mailnet.data.augment import _DRAW  # the op -> parameter-draw table that parse_augment reads names from

    title = "Augmentations (`augment`)"
    assert set(table_keys(title)) == set(AUGMENTATIONS)
    for cells in table_rows(section(title)):
        op = cells[0].strip("`")
        params = [p for p in inspect.signature(_DRAW[op]).parameters if p != "rng"]
        missing = [p for p in params if p not in backticked(cells[1])]
        assert not missing, f"{title}: {op}: parameter(s) {missing} not documented"


# ---- (2) every choice is mentioned ------------------------------------------------------------------------------


def test_choices_documented() -> None:
    for key, allowed in CHOICES.items():
        parent, _, _ = key.rpartition(".")
        words = backticked(section(title_of(parent)))
        missing = [c for c in allowed if c not in words]
        assert not missing, f"{key}: choice(s) {missing} not mentioned as `choice` under {title_of(parent)}"


def test_other_value_sets_documented() -> None:
    from mailnet.attacks.adv_train import METHODS
    from mailnet.layers.stem import STEMS

    expected = [
        ("`data`", data_config.MODES), ("`data`", EQUALIZE_POLICIES),
        ("`data.modalities[]`: keys of every source", data_config.SOURCES),
        ("Paired data: `data.tasks[]`", TASK_TYPES), ("`train.adv`", METHODS), ("`model.kwargs`", STEMS),
    ]
    for title, values in expected:
        missing = [v for v in values if v not in backticked(section(title))]
        assert not missing, f"{title}: value(s) {missing} not mentioned as `value`"


# ---- (3) the examples are valid configs ----------------------------------------------------------------------------


def _load_example(text: str, tmp_path: Path, index: int) -> tuple[dict[str, Any], Any]:
    raw = yaml.safe_load(text)
    assert isinstance(raw, dict) and "data" in raw, f"yaml block {index}: not a complete run config"
    path = tmp_path / f"example_{index}.yaml"
    path.write_text(text, encoding="utf-8")
    cfg = load_config(path)  # defaults <- file, every key and value checked
    dc = parse_data_config(cfg["data"])  # the data section's own schema (pure: no file is opened)
    accepted = model_kwargs()
    name = cfg["model"]["name"]
    assert name in accepted, f"yaml block {index}: unknown model {name!r}"
    extra = set(cfg["model"]["kwargs"]) - set(accepted[name])
    assert not extra, f"yaml block {index}: {name} does not accept model.kwargs {sorted(extra)}"
    tasks = len(dc.tasks) if dc.mode == "paired" else len(dc.modalities)
    weights = cfg["train"]["loss_weights"]
    assert weights is None or len(weights) == tasks, f"yaml block {index}: one loss weight per task ({tasks})"
    return cfg, dc


def _examples(tmp_path: Path) -> list[tuple[dict[str, Any], Any]]:
    blocks = yaml_blocks()
    assert blocks, "docs/config.md has no ```yaml examples"
    return [_load_example(text, tmp_path, i) for i, text in enumerate(blocks)]


def test_examples_load_and_validate(tmp_path: Path) -> None:
    assert len(_examples(tmp_path)) >= 2


def test_unpaired_medmnist_example(tmp_path: Path) -> None:
    from mailnet.data.sources.medmnist_npz import MEDMNIST_SIZES, check_flag

    found = [(cfg, dc) for cfg, dc in _examples(tmp_path)
             if dc.mode == "unpaired" and all(m.source == "medmnist" for m in dc.modalities)]
    assert found, "docs/config.md needs an unpaired MedMNIST example"
    for cfg, dc in found:
        assert cfg["name"] and len(dc.modalities) >= 2
        for m in dc.modalities:
            check_flag(m.options["flag"])  # a real 2D MedMNIST dataset
            assert m.options.get("source_size", 28) in MEDMNIST_SIZES


def test_paired_csv_example(tmp_path: Path) -> None:
    found = [(cfg, dc) for cfg, dc in _examples(tmp_path) if dc.mode == "paired"]
    assert found, "docs/config.md needs a paired CSV example"
    for cfg, dc in found:
        assert dc.manifest_csv and dc.tasks
        assert all(m.source == "paired" and m.options["column"] for m in dc.modalities)
