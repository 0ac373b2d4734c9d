"""How many ATen operator calls one training step (forward + backward, batch 8, 28 px) of each model makes.

    OMP_NUM_THREADS=2 python benchmarks/adhoc/op_count.py [--models mail,robust_mail,resnet18_late_fusion]

Why: on a GPU a small model's step costs about (number of kernel launches) x (launch + dispatch overhead), not
its MACs; the count (nested calls included, as the profiler lists them) shows how far MAIL is from late fusion.
"""
from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from mailnet.models import create_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mail,robust_mail,resnet18_late_fusion")
    ap.add_argument("--size", type=int, default=28)
    args = ap.parse_args()
    for name in args.models.split(","):
        model = create_model(name, in_chans=[3, 3], num_classes=[2, 2], img_size=args.size, stem="cifar").train()
        xs = [torch.rand(8, 3, args.size, args.size) for _ in range(2)]
        sum(z.sum() for z in model(xs)).backward()  # warm-up: first-call caches are not counted
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            sum(z.sum() for z in model(xs)).backward()
        calls = sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))
        print(f"{name}: {calls} aten calls per training step (forward + backward, nested included)")


if __name__ == "__main__":
    main()
