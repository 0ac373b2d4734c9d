"""``mailnet export CHECKPOINT --onnx out.onnx``: the trained model as an ONNX graph (one input per modality, one
output per task, dynamic batch), checked against PyTorch with onnxruntime; ``--benchmark`` times it.

Models random at inference (Robust-MAIL, DRIFA with MC dropout) have no single deterministic graph and are refused;
``--fixed-draw SEED`` exports one fixed draw of such a model (fixed batch size), labelled so in the file's metadata.
An existing output (the graph, its model card ``.onnx.json``, the partner bank) is never replaced silently: add
``--overwrite``.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX (checked with onnxruntime)", description=__doc__)
    p.add_argument("checkpoint", metavar="CHECKPOINT|RUN_DIR",
                   help="a mailnet .safetensors checkpoint, or a run directory (its best checkpoint)")
    p.add_argument("--onnx", required=True, help="output .onnx file")
    p.add_argument("--fixed-draw", type=int, metavar="SEED",
                   help="random models only: export the single draw seeded by SEED (labelled as such)")
    p.add_argument("--fixed-batch", type=int, default=1, help="batch size of a --fixed-draw graph (default: 1)")
    p.add_argument("--atol", type=float, default=1e-4, help="largest allowed |ONNX - PyTorch| (default: 1e-4)")
    p.add_argument("--partner-bank", metavar="FILE.npz",
                   help="also write the checkpoint's partner-bank images (what `mailnet predict` puts in place of a "
                        "missing modality of an unpaired model) as uint8 arrays keyed by modality")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --onnx file (and its .json model card, and the --partner-bank file)")
    p.add_argument("--benchmark", action="store_true", help="time the ONNX model with onnxruntime afterwards")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime threads for --benchmark (default: 2)")
    p.add_argument("--batch", type=int, default=64, help="throughput batch for --benchmark (default: 64)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mailnet.errors import ConfigError
    from mailnet.engine.rundir import checkpoint_from
    from mailnet.export import card_path, export_checkpoint, time_onnx

    if args.fixed_batch < 1 or args.batch < 1 or args.threads < 1:
        raise ConfigError("export: --fixed-batch, --batch and --threads must be at least 1")
    outputs = [Path(args.onnx), card_path(args.onnx)] + ([Path(args.partner_bank)] if args.partner_bank else [])
    existing = [str(p) for p in outputs if p.exists()]
    if existing and not args.overwrite:  # checked before any work, so a refused export writes nothing
        raise ConfigError(f"export: {', '.join(existing)} already exist(s): add --overwrite to replace, or choose "
                          "another --onnx / --partner-bank path")
    info = export_checkpoint(checkpoint_from(args.checkpoint), args.onnx, fixed_draw=args.fixed_draw, atol=args.atol,
                             fixed_batch=args.fixed_batch)
    label = f" (ONE FIXED DRAW, seed {info['fixed_draw']}, batch {info['fixed_batch']})" if info["fixed_draw"] is not None else ""
    print(f"saved {info['onnx']}{label}: model {info['model']}, inputs {', '.join(info['inputs'])}, "
          f"outputs {', '.join(info['outputs'])}")
    print(f"onnxruntime check: max |ONNX - PyTorch| = {info['max_abs_diff']:.2e} on {info['checked_on']} samples "
          f"(allowed {args.atol:g})")
    print(f"model card (inputs: pixels in [0, 1] and their preprocessing; outputs: classes and decision rule): "
          f"{info['card']}")
    if args.partner_bank:
        from mailnet.export import save_partner_bank

        shapes = save_partner_bank(checkpoint_from(args.checkpoint), args.partner_bank)
        print(f"partner bank: {args.partner_bank} ({', '.join(f'{k} {v}' for k, v in shapes.items())})")
    if args.benchmark:
        t = time_onnx(args.onnx, batch=args.batch, threads=args.threads)
        print(f"{t['runtime']}, {t['threads']} threads: latency batch {t['latency_batch']} {t['latency_ms']:.2f} ms "
              f"(min {t['latency_ms_min']:.2f}); batch {t['batch']}: {t['forward_batch_ms']:.1f} ms, "
              f"{t['samples_per_s']:.1f} samples/s")
    return 0
