"""``mailnet predict``: class probabilities per task for new images, one subject or a batch (folder/CSV).

One subject (``--image`` only) prints each task's predicted class and class probabilities. A batch writes a CSV
(``--out``, else printed), one row per input and task: ``id`` (the image path; a ``--csv`` row's ``id`` column,
else its image paths joined by ``;``), ``task``, ``filled_from_partner_bank`` (modalities not given, filled from
the checkpoint's partner bank), ``pred`` (predicted class index; 0/1 per class for multi-label), ``pred_name``
(its class name, when the model knows them), one probability column per class, ``p_<class name>``
(``p0, p1, ...`` for unnamed classes), then ``draws`` (draws averaged: 1 for a deterministic model) and
``partners`` (partner-bank images averaged for the missing modalities; 0 when every modality was given).
An unreadable or missing image in a folder or a CSV row is skipped with a warning naming it, and the batch
fails only when none could be read.
"""
from __future__ import annotations

import argparse
import csv
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mailnet.engine.predict import Predictor


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict class probabilities for new images", description=__doc__)
    p.add_argument("checkpoint", metavar="CHECKPOINT|RUN_DIR")
    p.add_argument("--image", action="append", default=[], metavar="MODALITY=PATH", help="one image per modality")
    p.add_argument("--folder", help="batch mode: every image in this folder, for --modality")
    p.add_argument("--modality", help="batch mode with --folder: which modality the folder's images are")
    p.add_argument("--csv", help="batch mode: a CSV with one column per modality name holding image paths "
                                 "(relative to the CSV's folder) and an optional 'id' column")
    p.add_argument("--out", help="output CSV (default: print); columns: id, task, "
                                 "filled_from_partner_bank, pred, pred_name, one p_<class> per class, draws, partners")
    p.add_argument("--partners", type=int, default=8,
                   help="partner images averaged for a missing modality (default 8; at most the checkpoint's "
                   "partner bank, eval.partner_bank, which the output reports)")
    p.add_argument("--draws", type=int, default=8,
                   help="models random at inference (e.g. Robust-MAIL): draws averaged per input (default 8); "
                        "a deterministic model ignores it and --seed")
    p.add_argument("--seed", type=int, default=0,
                   help="random models: the draws use seeds N, N+1, ..., N+draws-1 (default 0), so a repeated "
                        "call gives the same probabilities and another N other draws")
    p.add_argument("--device", default="cpu", help="cpu (default) | cuda | auto")
    p.set_defaults(func=run)


@dataclass
class Subject:
    """One input to predict: its id in the output, and an image file per given modality."""

    id: str
    files: dict[int, Path]
    source: str = ""  # the --folder or --csv it came from: an unreadable file is skipped instead of ending the batch
    where: str = ""  # its place there, for the warning (a CSV's "line 3: ")


def run(args: argparse.Namespace) -> int:
    from mailnet.commands import require_at_least
    from mailnet.engine.predict import Predictor
    from mailnet.engine.rundir import checkpoint_from
    from mailnet.engine.trainer import resolve_device
    from mailnet.errors import MailnetError, MailnetWarning
    from mailnet.utils import write_text

    require_at_least(1, ("--partners", args.partners), ("--draws", args.draws))
    require_at_least(0, ("--seed", args.seed))
    pred = Predictor.from_checkpoint(checkpoint_from(args.checkpoint), device=resolve_device(args.device))
    if args.image and (args.folder or args.csv):  # the one subject would vanish among the batch's rows
        batch = "--folder" if args.folder else "--csv"
        raise MailnetError(f"--image is for one subject and cannot be combined with {batch}; add the image to the "
                           "folder or as a CSV row")
    subjects = from_images(pred, args.image) if args.image else []
    if args.folder:
        subjects += from_folder(pred, Path(args.folder), args.modality)
    if args.csv:
        subjects += from_csv(pred, Path(args.csv))
    if not subjects:
        raise MailnetError("nothing to predict: give --image MODALITY=PATH, --folder with --modality, or --csv")
    results, skipped = predict_all(pred, subjects, args.partners, args.draws, args.seed)
    if len(results) == 1 and not (args.folder or args.csv):
        print(describe(pred, results[0][1]))
        if not args.out:  # one subject is read on screen; with --out it is also written like a batch
            return 0
    text = results_csv(pred, results)
    if args.out:
        write_text(args.out, text)
        print(f"written: {args.out} ({len(results)} inputs)")
    else:
        print(text, end="")
    for line in skipped:  # said last, below the output, where it is read
        warnings.warn(line, MailnetWarning, stacklevel=2)
    return 0


def from_images(pred: Predictor, items: list[str]) -> list[Subject]:
    """``--image MODALITY=PATH ...``: one subject, its id the given paths joined by ``;``."""
    from mailnet.errors import MailnetError

    given: dict[int, Path] = {}
    for item in items:
        if "=" not in item:
            raise MailnetError(f"--image {item!r}: expected MODALITY=PATH")
        name, path = item.split("=", 1)
        m = pred.modality_index(name)
        if m in given:
            raise MailnetError(f"--image {name}= given twice ({given[m]} and {path}): one image per modality")
        given[m] = Path(path)
    return [Subject(";".join(str(p) for p in given.values()), given)]


def from_folder(pred: Predictor, folder: Path, modality: str | None) -> list[Subject]:
    """``--folder``: every image file in it (not recursive), for one modality; ids are the file paths."""
    from mailnet.engine.predict import IMAGE_SUFFIXES
    from mailnet.errors import MailnetError

    if not modality:
        raise MailnetError("--folder needs --modality NAME")
    m = pred.modality_index(modality)
    if not folder.is_dir():
        raise MailnetError(f"{folder}: folder not found")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise MailnetError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return [Subject(str(f), {m: f}, source=str(folder)) for f in files]


def from_csv(pred: Predictor, path: Path) -> list[Subject]:
    """``--csv``: one subject per row, images in the columns named after modalities (paths relative to the CSV's
    folder); its id is the row's ``id`` column when there is one, else its image paths as written, joined by ``;``."""
    from mailnet.errors import MailnetError

    if not path.is_file():
        raise MailnetError(f"{path}: CSV not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            rows = [(reader.line_num, [c.strip() for c in r]) for r in reader if any(c.strip() for c in r)]
    except (UnicodeDecodeError, csv.Error, OSError) as e:
        raise MailnetError(f"{path}: unreadable CSV ({type(e).__name__}: {e})") from None
    if not header:
        raise MailnetError(f"{path}: empty CSV (no header row)")
    names = [s.name for s in pred.modalities]
    cols = [j for j, c in enumerate(header) if c in names]
    twice = sorted({header[j] for j in cols if [header[k] for k in cols].count(header[j]) > 1})
    if twice:
        raise MailnetError(f"{path}: column {twice[0]!r} appears more than once in the header: one column per modality")
    if not cols:
        raise MailnetError(f"{path}: no column named after a modality ({', '.join(names)})")
    if not rows:
        raise MailnetError(f"{path}: the CSV has a header but no rows: nothing to predict")
    id_col = header.index("id") if "id" in header else None
    subjects = []
    for line, row in rows:
        cells = {j: row[j] for j in cols if j < len(row) and row[j]}
        if not cells:
            raise MailnetError(f"{path}: line {line}: no image path in any modality column "
                               f"({', '.join(header[j] for j in cols)})")
        given = {pred.modality_index(header[j]): path.parent / v for j, v in cells.items()}
        own = row[id_col] if id_col is not None and id_col < len(row) else ""
        subjects.append(Subject(own or ";".join(cells.values()), given, source=str(path), where=f"line {line}: "))
    return subjects


def predict_all(pred: Predictor, subjects: list[Subject], partners: int, draws: int, seed: int = 0
                ) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """Each subject's prediction, and per ``--folder``/``--csv`` source with skipped inputs a line saying how many:
    an unreadable or missing image there is skipped with a one-line warning naming it (and the CSV line), so one bad
    file does not lose the batch; a source none of whose inputs could be read fails."""
    from mailnet.errors import DataError, MailnetError, MailnetWarning

    results: list[tuple[str, dict[str, Any]]] = []
    skipped: dict[str, int] = {}
    for s in subjects:
        try:
            images = {m: pred.load_image(p, m) for m, p in s.files.items()}
        except DataError as e:
            if not s.source:
                raise
            warnings.warn(f"{s.source}: {s.where}{e}; skipped" if s.where else f"{e}; skipped", MailnetWarning,
                          stacklevel=2)
            skipped[s.source] = skipped.get(s.source, 0) + 1
            continue
        results.append((s.id, pred.predict(images, k=partners, draws=draws, seed=seed)))
    summary = []
    for src, n in skipped.items():
        mine = [s for s in subjects if s.source == src]
        unit = "rows" if mine[0].where else "image files"
        if n == len(mine):
            raise MailnetError(f"{src}: none of its {n} {unit} could be read (see the warnings above)")
        summary.append(f"{src}: skipped {n} of its {len(mine)} {unit} (unreadable or missing images: see the "
                       "warnings above)")
    return results, summary


def describe(pred: Predictor, result: dict[str, Any]) -> str:
    """One subject's prediction for the terminal: notes on filled modalities and draws, then per task the
    predicted class and every class's probability."""
    from mailnet.engine.prediction_table import class_names, predicted

    lines = []
    if result["filled_from_partner_bank"]:
        lines.append(f"note: {', '.join(result['filled_from_partner_bank'])} not given: filled from the checkpoint's "
                     f"partner bank, averaged over {result['partners']} partner images")
    if result["draws"] > 1:
        lines.append(f"note: the model is random at inference; averaged over {result['draws']} draws")
    for name, probs in result["tasks"].items():
        task = next(t for t in pred.tasks if t.name == name)
        labels = class_names(task) or [str(k) for k in range(len(probs))]
        index, label = predicted(probs, task)[0]
        if task.task_type == "multi-label":
            shown = (label or "none") if class_names(task) else f"0/1 per class {index}"
        else:
            shown = label or f"class {index}"
        lines.append(f"{name}: predicted {shown}  ("
                     + "  ".join(f"{n}={p:.4f}" for n, p in zip(labels, probs)) + ")")
    return "\n".join(lines)


def results_csv(pred: Predictor, results: list[tuple[str, dict[str, Any]]]) -> str:
    """The batch output: one row per input and task (columns in the module docstring)."""
    from mailnet.engine.prediction_table import predicted, probability_cells, probability_columns

    columns = probability_columns(pred.tasks)
    tasks = {t.name: t for t in pred.tasks}
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "task", "filled_from_partner_bank", "pred", "pred_name"] + columns + ["draws", "partners"])
    for sid, r in results:
        for name, probs in r["tasks"].items():
            index, label = predicted(probs, tasks[name])[0]
            w.writerow([sid, name, ";".join(r["filled_from_partner_bank"]), index, label]
                       + probability_cells(probs, tasks[name], columns) + [r["draws"], r["partners"]])
    return buf.getvalue()
