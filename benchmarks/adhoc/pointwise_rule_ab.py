"""A/B of the small-batch 1x1-conv rule in one process: batch-1 forwards of fast MAIL alternately with every
unpadded 1x1 conv as a batched matmul (the library's rule) and with only the grouped ones (groups > 1) so, the
ungrouped ones left to F.conv2d (a rule tried and not adopted: no gain measured).

Ad-hoc script kept as run (2026-11-28, fifth session) so the BENCHMARKS.md figure it produced can be re-run.
Usage: OMP_NUM_THREADS=1 python benchmarks/adhoc/pointwise_rule_ab.py [--threads 1] [--rounds 6]
"""
import argparse, statistics, time
import torch
import torch.nn.functional as F
from mailnet.layers.fast import ops
from mailnet.models import create_model

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--rounds", type=int, default=6)
ap.add_argument("--size", type=int, default=28)
args = ap.parse_args()
torch.set_num_threads(args.threads)


def grouped_only(conv, x, weight, bias):
    if (x.shape[0] < ops.SMALL_BATCH and weight.shape[-2:] == (1, 1) and conv.padding in ((0, 0), 0)
            and conv.groups > 1):
        return ops.pointwise_matmul(x, weight, bias, conv.stride, conv.groups)
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


variants = {"every 1x1 as matmul (library)": ops.conv_forward, "grouped 1x1 only": grouped_only}
torch.manual_seed(0)
m = create_model("mail", in_chans=[3, 3], num_classes=[2, 2], stem="cifar" if args.size <= 64 else "imagenet",
                 img_size=args.size).eval()
x = [torch.rand(1, 3, args.size, args.size) for _ in range(2)]
res = {k: [] for k in variants}
with torch.no_grad():
    outs = {}
    for name, fn in variants.items():
        ops.conv_forward = fn
        outs[name] = m(x)
    a, b = outs.values()
    print("max |difference|", max(float((p - q).abs().max()) for p, q in zip(a, b)))
    for _ in range(args.rounds):
        for name, fn in variants.items():
            ops.conv_forward = fn
            ts = []
            for _ in range(30):
                t = time.perf_counter(); m(x); ts.append(time.perf_counter() - t)
            res[name].append(statistics.median(ts) * 1e3)
for name, v in res.items():
    print(f"{name}: median of round medians {statistics.median(v):.1f} ms, rounds {[round(t, 1) for t in v]}")
