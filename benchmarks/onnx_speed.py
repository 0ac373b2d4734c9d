"""Batch-1 latency and batch throughput of MAIL vs ``resnet18_late_fusion`` exported to ONNX, under onnxruntime.

    python benchmarks/onnx_speed.py --sizes 28,128 --threads 2 --json onnx_speed.json

Why a separate figure: a deployment would run the exported graph, and onnxruntime chooses its own kernels and pays
less per operator than eager PyTorch, which matters for MAIL's many small operators. Both models are exported the
same way as ``mailnet export`` does (eval mode, BN folded by constant folding, dynamic batch) with the same random
initialisation (timing does not depend on the weights' values) and timed in turn, ``--rounds`` times, so load from
other jobs hits both alike; the figures are medians over rounds.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import torch

from mailnet.export import export_onnx, time_onnx
from mailnet.models import create_model


def export(name: str, size: int, modalities: int, folder: Path) -> Path:
    torch.manual_seed(0)
    model = create_model(name, in_chans=[3] * modalities, num_classes=[2] * modalities, img_size=size).eval()
    return export_onnx(model, folder / f"{name}_{size}.onnx", [(3, size, size)] * modalities)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="28,128")
    ap.add_argument("--modalities", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=50, help="batch-1 calls per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline", default="resnet18_late_fusion")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            paths = {n: export(n, size, args.modalities, Path(tmp)) for n in ("mail", args.baseline)}
            runs: dict[str, list[dict]] = {n: [] for n in paths}
            for _ in range(args.rounds):
                for n, p in paths.items():
                    runs[n].append(time_onnx(p, batch=args.batch, threads=args.threads, iters=args.iters))
            med = {n: {k: statistics.median(r[k] for r in rs) for k in ("latency_ms", "samples_per_s")}
                   for n, rs in runs.items()}
            row = {"size": size, **{f"{n}_{k}": v for n, d in med.items() for k, v in d.items()},
                   "latency_ratio": med["mail"]["latency_ms"] / med[args.baseline]["latency_ms"],
                   "throughput_ratio": med[args.baseline]["samples_per_s"] / med["mail"]["samples_per_s"]}
            rows.append(row)
            print(f"{size} px: latency MAIL {med['mail']['latency_ms']:.2f} ms, {args.baseline} "
                  f"{med[args.baseline]['latency_ms']:.2f} ms, ratio {row['latency_ratio']:.2f}; "
                  f"batch {args.batch}: MAIL {med['mail']['samples_per_s']:.0f}/s, {args.baseline} "
                  f"{med[args.baseline]['samples_per_s']:.0f}/s, time ratio {row['throughput_ratio']:.2f}",
                  flush=True)
    if args.json:
        import onnxruntime

        meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.processor()
                or platform.machine(), "threads": args.threads, "onnxruntime": onnxruntime.__version__,
                "torch": torch.__version__, "batch": args.batch, "iters": args.iters, "rounds": args.rounds}
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
