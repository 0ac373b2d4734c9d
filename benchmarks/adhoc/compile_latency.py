"""Batch-1 latency of MAIL vs resnet18_late_fusion, eager and under torch.compile (inductor, freezing on).

Ad-hoc script kept as run (2026-11-28, fifth session) so the BENCHMARKS.md figures it produced can be re-run.
Usage: OMP_NUM_THREADS=1 python benchmarks/adhoc/compile_latency.py --impl fast|reference [--threads 1]
Prints each model's compile time, the largest output difference to eager, and 3 rounds of medians of 30 calls.
"""
import argparse, statistics, time
import torch
import torch._inductor.config as inductor_config
from mailnet.models import create_model

ap = argparse.ArgumentParser()
ap.add_argument("--impl", choices=("fast", "reference"), default="fast")
ap.add_argument("--threads", type=int, default=1)
args = ap.parse_args()
torch.set_num_threads(args.threads)
inductor_config.freezing = True  # lets inductor fold BatchNorm and pre-pack conv weights for inference
models = {}
for name in ("mail", "resnet18_late_fusion"):
    torch.manual_seed(0)
    kw = {"fast": args.impl == "fast"} if name == "mail" else {}
    m = create_model(name, in_chans=[3, 3], num_classes=[2, 2], stem="cifar", **kw).eval()
    x = [torch.rand(1, 3, 28, 28) for _ in range(2)]
    with torch.no_grad():
        ref, t = m(x), time.perf_counter()
        c = torch.compile(m)
        out = c(x)
    diff = max(float((a - b).abs().max()) for a, b in zip(out, ref))
    print(f"{name}: compile {time.perf_counter() - t:.1f} s, max |compiled - eager| {diff:.1e}", flush=True)
    models[name] = (m, c, x)
res: dict[tuple[str, str], list[float]] = {}
for _ in range(3):
    for name, (m, c, x) in models.items():
        for kind, f in (("eager", m), ("compiled", c)):
            ts = []
            with torch.no_grad():
                for _ in range(30):
                    t = time.perf_counter(); f(x); ts.append(time.perf_counter() - t)
            res.setdefault((name, kind), []).append(statistics.median(ts))
for (name, kind), v in res.items():
    print(f"{name} {kind}: medians {[round(1000 * a, 1) for a in v]} ms")
