"""``mailnet predict``: class probabilities per task for new images, one subject or a batch (folder/CSV)."""
from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict class probabilities for new images", description=__doc__)
    p.add_argument("checkpoint", metavar="CHECKPOINT|RUN_DIR")
    p.add_argument("--image", action="append", default=[], metavar="MODALITY=PATH", help="one image per modality")
    p.add_argument("--folder", help="batch mode: every image in this folder, for --modality")
    p.add_argument("--modality", help="batch mode with --folder: which modality the folder's images are")
    p.add_argument("--csv", help="batch mode: a CSV with one column per modality name holding image paths")
    p.add_argument("--out", help="batch mode: output CSV (default: print)")
    p.add_argument("--partners", type=int, default=8, help="partner images averaged for a missing modality")
    p.add_argument("--draws", type=int, default=8, help="draws averaged for models random at inference")
    p.add_argument("--device", default="cpu", help="cpu (default) | cuda | auto")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mailnet.engine.predict import IMAGE_SUFFIXES, Predictor
    from mailnet.engine.rundir import checkpoint_from
    from mailnet.errors import MailnetError
    from mailnet.commands import require_at_least
    from mailnet.engine.trainer import resolve_device
    from mailnet.utils import write_text

    require_at_least(1, ("--partners", args.partners), ("--draws", args.draws))
    pred = Predictor.from_checkpoint(checkpoint_from(args.checkpoint), device=resolve_device(args.device))
    subjects: list[tuple[str, dict[int, Path]]] = []
    if args.image:
        given = {}
        for item in args.image:
            if "=" not in item:
                raise MailnetError(f"--image {item!r}: expected MODALITY=PATH")
            name, path = item.split("=", 1)
            given[pred.modality_index(name)] = Path(path)
        subjects.append(("image", given))
    if args.folder:
        if not args.modality:
            raise MailnetError("--folder needs --modality NAME")
        m = pred.modality_index(args.modality)
        folder = Path(args.folder)
        if not folder.is_dir():
            raise MailnetError(f"{folder}: folder not found")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise MailnetError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
        subjects += [(str(f), {m: f}) for f in files]
    if args.csv:
        path = Path(args.csv)
        if not path.is_file():
            raise MailnetError(f"{path}: CSV not found")
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            cols = [c for c in (reader.fieldnames or []) if c in [s.name for s in pred.modalities]]
            if not cols:
                raise MailnetError(f"{path}: no column named after a modality "
                                   f"({', '.join(s.name for s in pred.modalities)})")
            for i, row in enumerate(reader):
                given = {pred.modality_index(c): (path.parent / row[c]) for c in cols if row[c]}
                subjects.append((f"row{i + 1}", given))
    if not subjects:
        raise MailnetError("nothing to predict: give --image MODALITY=PATH, --folder with --modality, or --csv")

    results = []
    for sid, given in subjects:
        images = {m: pred.load_image(p, m) for m, p in given.items()}
        results.append((sid, pred.predict(images, k=args.partners, draws=args.draws)))
    if len(results) == 1 and not (args.folder or args.csv):
        r = results[0][1]
        if r["filled_from_partner_bank"]:
            print(f"note: {', '.join(r['filled_from_partner_bank'])} not given: filled from the checkpoint's partner "
                  f"bank, averaged over {r['partners']} partner images")
        if r["draws"] > 1:
            print(f"note: the model is random at inference; averaged over {r['draws']} draws")
        for task, probs in r["tasks"].items():
            names = next(t.class_names for t in pred.tasks if t.name == task) or [str(i) for i in range(len(probs))]
            print(f"{task}: " + "  ".join(f"{n}={p:.4f}" for n, p in zip(names, probs)))
        return 0
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "task", "filled_from_partner_bank", "probabilities"])
    for sid, r in results:
        for task, probs in r["tasks"].items():
            w.writerow([sid, task, ";".join(r["filled_from_partner_bank"]), " ".join(f"{p:.6f}" for p in probs)])
    if args.out:
        write_text(args.out, buf.getvalue())
        print(f"written: {args.out} ({len(results)} inputs)")
    else:
        print(buf.getvalue(), end="")
    return 0
