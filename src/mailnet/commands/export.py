"""``mailnet export CHECKPOINT --onnx out.onnx``: the trained model as an ONNX graph (one input per modality, one
output per task, dynamic batch), checked against PyTorch with onnxruntime; ``--benchmark`` times it.

Models random at inference (Robust-MAIL, DRIFA with MC dropout) have no single deterministic graph and are refused;
``--fixed-draw SEED`` exports one fixed draw of such a model (fixed batch size), labelled so in the file's metadata.
An existing output (the graph, its model card ``.onnx.json``, the partner bank) is never replaced silently: add
``--overwrite``. The outputs appear (or replace the earlier ones) together, and only once the graph passed its
check: a failed export leaves earlier files exactly as they were and writes nothing.
"""
from __future__ import annotations

import argparse


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
    """Validate every output path before any work, then export all or nothing (see ``export_checkpoint``)."""
    from mailnet.errors import ConfigError
    from mailnet.engine.rundir import checkpoint_from
    from mailnet.export import export_checkpoint, output_paths

    if args.fixed_batch < 1 or args.batch < 1 or args.threads < 1:
        raise ConfigError("export: --fixed-batch, --batch and --threads must be at least 1")
    outputs = output_paths(args.onnx, args.partner_bank)  # one file named twice, or a folder: refused here
    existing = [str(p) for p in outputs if p.exists()]
    if existing and not args.overwrite:  # checked before any work, so a refused export writes nothing
        raise ConfigError(f"export: {', '.join(existing)} already exist(s): add --overwrite to replace, or choose "
                          "another --onnx / --partner-bank path")
    info = export_checkpoint(checkpoint_from(args.checkpoint), args.onnx, fixed_draw=args.fixed_draw, atol=args.atol,
                             fixed_batch=args.fixed_batch, partner_bank=args.partner_bank,
                             benchmark={"batch": args.batch, "threads": args.threads} if args.benchmark else None)
    label = f" (ONE FIXED DRAW, seed {info['fixed_draw']}, batch {info['fixed_batch']})" if info["fixed_draw"] is not None else ""
    print(f"saved {info['onnx']}{label}: model {info['model']}, inputs {', '.join(info['inputs'])}, "
          f"outputs {', '.join(info['outputs'])}")
    print(f"onnxruntime check: max |ONNX - PyTorch| = {info['max_abs_diff']:.2e} on {info['checked_on']} samples "
          f"(allowed {args.atol:g})")
    print(f"model card (inputs: pixels in [0, 1] and their preprocessing; outputs: classes and decision rule): "
          f"{info['card']}")
    if args.partner_bank is not None:
        shapes = info["partner_bank_shapes"]
        print(f"partner bank: {args.partner_bank} ({', '.join(f'{k} {v}' for k, v in shapes.items())})")
    if args.benchmark:
        t = info["timing"]
        print(f"{t['runtime']}, {t['threads']} threads: latency batch {t['latency_batch']} {t['latency_ms']:.2f} ms "
              f"(min {t['latency_ms_min']:.2f}); batch {t['batch']}: {t['forward_batch_ms']:.1f} ms, "
              f"{t['samples_per_s']:.1f} samples/s")
    return 0
