"""Batch-1 latency of MAIL vs resnet18_late_fusion, eager and as a frozen TorchScript trace
(torch.jit.trace -> torch.jit.freeze -> torch.jit.optimize_for_inference: constant-folds BN into convs, fuses
conv+add+relu through oneDNN and runs without Python between operators).

Ad-hoc script kept as run (2026-11-28, sixth session) so the BENCHMARKS.md figures it produced can be re-run.
Usage: OMP_NUM_THREADS=1 python benchmarks/adhoc/jit_latency.py [--threads 1] [--size 28] [--rounds 3]
Prints the largest output difference to eager and, per round, the median of 30 calls of each form.
"""
import argparse, statistics, time, warnings
import torch
from mailnet.models import create_model
from mailnet.export import ListModel

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--size", type=int, default=28)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--no-optimize", action="store_true", help="freeze only, skip optimize_for_inference")
args = ap.parse_args()
torch.set_num_threads(args.threads)
stem = "cifar" if args.size <= 64 else "imagenet"
forms = {}
for name in ("mail", "resnet18_late_fusion"):
    torch.manual_seed(0)
    m = ListModel(create_model(name, in_chans=[3, 3], num_classes=[2, 2], stem=stem)).eval()
    x = tuple(torch.rand(1, 3, args.size, args.size) for _ in range(2))
    t = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = torch.jit.freeze(torch.jit.trace(m, x, check_trace=False))
        if not args.no_optimize:
            s = torch.jit.optimize_for_inference(s)
        for _ in range(3):
            s(*x)  # the profiling executor specialises on the first calls
        ref, out = m(*x), s(*x)
    diff = max(float((a - b).abs().max()) for a, b in zip(out, ref))
    print(f"{name}: script {time.perf_counter() - t:.1f} s, max |script - eager| {diff:.1e}", flush=True)
    forms[name] = (m, s, x)
res = {}
for _ in range(args.rounds):
    for name, (m, s, x) in forms.items():
        for kind, f in (("eager", m), ("script", s)):
            ts = []
            with torch.no_grad():
                for _ in range(30):
                    t = time.perf_counter(); f(*x); ts.append(time.perf_counter() - t)
            res.setdefault((name, kind), []).append(statistics.median(ts))
for (name, kind), v in res.items():
    print(f"{name} {kind}: medians {[round(1000 * a, 1) for a in v]} ms", flush=True)
for kind in ("eager", "script"):
    r = [a / b for a, b in zip(res[("mail", kind)], res[("resnet18_late_fusion", kind)])]
    print(f"ratio mail / late fusion, {kind}: {[round(a, 2) for a in r]}")
