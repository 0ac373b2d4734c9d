"""Batch-1 latency of fast MAIL with its modality streams stacked (the default for CPU inference at small batches)
and unstacked, against resnet18_late_fusion, timed in turn inside every repetition (interleaved), in one process.

    OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE python benchmarks/adhoc/stacked_latency.py --threads 2 --size 28
    OMP_NUM_THREADS=1 python benchmarks/adhoc/stacked_latency.py --threads 1 --size 28 --batch 64 --reps 3
    OMP_NUM_THREADS=1 python benchmarks/adhoc/stacked_latency.py --threads 1 --batch 64 --reps 2 --attack

Both MAIL variants are the same model object (stacking is switched with ``mailnet.layers.fast.stacked_streams``).
``--attack`` times an attack step instead (eval, parameters frozen, gradient of the summed logits w.r.t. the inputs).
"""
from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch

from mailnet.attacks.eot import attack_mode
from mailnet.layers.fast import stacked_streams
from mailnet.models import create_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--attack", action="store_true", help="time an input-gradient step instead of inference")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    stem = "cifar" if args.size < 96 else "imagenet"
    kw = dict(in_chans=[3, 3], num_classes=[2, 2], img_size=args.size, stem=stem)
    torch.manual_seed(0)
    mail, late = create_model("mail", **kw).eval(), create_model("resnet18_late_fusion", **kw).eval()
    xs = [torch.rand(args.batch, 3, args.size, args.size) for _ in range(2)]
    subjects = [("mail stacked", mail, lambda: stacked_streams(True)),
                ("mail unstacked", mail, lambda: stacked_streams(False)),
                ("resnet18_late_fusion", late, nullcontext)]
    times: dict[str, list[float]] = {label: [] for label, _, _ in subjects}

    def call(model: torch.nn.Module) -> None:
        if not args.attack:
            with torch.inference_mode():
                model(xs)
            return
        with attack_mode(model):
            leaves = [x.clone().requires_grad_(True) for x in xs]
            torch.autograd.grad(sum(z.sum() for z in model(leaves)), leaves)

    warmup = 1 if args.attack else 3
    for rep in range(args.reps + warmup):
        for label, model, ctx in subjects:
            with ctx():
                t0 = time.perf_counter()
                call(model)
                if rep >= warmup:
                    times[label].append(time.perf_counter() - t0)
    base = statistics.median(times["resnet18_late_fusion"])
    print(f"{'attack step' if args.attack else 'inference'}, {args.size} px, batch {args.batch}, {torch.get_num_threads()} threads, medians of {args.reps}: " + ", ".join(
        f"{k} {1000 * statistics.median(v):.1f} ms (x{statistics.median(v) / base:.2f})" for k, v in times.items()))


if __name__ == "__main__":
    main()
