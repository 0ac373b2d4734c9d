"""``mailnet evaluate``: score a run's (or a checkpoint's) model on the full split of every modality."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a run directory or checkpoint", description=__doc__)
    p.add_argument("target", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--which", default="best", choices=["best", "last"], help="checkpoint of a run directory")
    p.add_argument("--mc-samples", type=int, help="draws for models random at inference (default: the run's)")
    p.add_argument("--partner-draws", type=int, help="partner re-draws for partner sensitivity (unpaired)")
    p.add_argument("--batch-size", type=int,
                   help="default: the run's eval.batch_size (a random model draws its random filters per batch)")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-root")
    p.add_argument("--out", help="JSON file for the metrics (default: RUN_DIR/eval_SPLIT.json for a run)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mailnet.api import evaluate
    from mailnet.commands import require_at_least
    from mailnet.engine.report import metrics_table
    from mailnet.utils import write_json

    require_at_least(1, ("--mc-samples", args.mc_samples), ("--batch-size", args.batch_size))
    require_at_least(0, ("--partner-draws", args.partner_draws))
    target = Path(args.target)
    result = evaluate(target, args.split, which=args.which, device=args.device, data_root=args.data_root,
                      batch_size=args.batch_size, mc_samples=args.mc_samples, partner_draws=args.partner_draws)
    ckpt = result["checkpoint"]
    print(metrics_table(result, title=f"{args.split} metrics ({ckpt})"))
    out = Path(args.out) if args.out else (target / f"eval_{args.split}.json" if target.is_dir() else None)
    if out:
        write_json(out, result)
        print(f"written: {out}")
    return 0
