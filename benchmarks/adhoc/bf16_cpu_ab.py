"""Does bf16 autocast on a CPU with AMX-BF16 change MAIL's speed against late fusion? (issue 6, an opt-in idea only:
bf16 changes the arithmetic, so it cannot be the default fast path, which must compute what the reference does.)

    OMP_NUM_THREADS=2 python benchmarks/adhoc/bf16_cpu_ab.py --size 28 --iters 3

Fast MAIL and resnet18_late_fusion (2 modalities x 3 channels, 2 binary heads, batch 64, Adam), each timed in
float32 and under ``torch.autocast("cpu", dtype=torch.bfloat16)``, all four interleaved in every repetition;
batch-1 latency likewise. Prints medians and the MAIL / late-fusion ratio per precision.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from speed import Subject, cpu_name, interleaved  # noqa: E402

from mailnet.models import create_model  # noqa: E402


class Autocast(Subject):
    """The same subject, every step under bf16 autocast."""

    def train_step(self) -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return super().train_step()

    def latency(self) -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return super().latency()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--latency-iters", type=int, default=20)
    args = ap.parse_args()
    stem = "cifar" if args.size < 96 else "imagenet"
    kw = dict(in_chans=[3, 3], num_classes=[2, 2], img_size=args.size, stem=stem)
    subjects = []
    for name in ("mail", "resnet18_late_fusion"):
        for cls, prec in ((Subject, "fp32"), (Autocast, "bf16")):
            torch.manual_seed(0)
            subjects.append(cls(f"{name} {prec}", create_model(name, **kw), args.size, 64, 2, 0, torch.device("cpu")))
    print(f"{cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads, {args.size} px ({stem} stem)")
    for kind, iters in (("train_step", args.iters), ("latency", args.latency_iters)):
        times = interleaved(subjects, kind, iters, warmup=1)
        med = {k: 1000 * statistics.median(v) for k, v in times.items()}
        for prec in ("fp32", "bf16"):
            m, b = med[f"mail {prec}"], med[f"resnet18_late_fusion {prec}"]
            print(f"{kind:10s} {prec}: MAIL {m:9.1f} ms, late fusion {b:9.1f} ms, ratio {m / b:.2f}")


if __name__ == "__main__":
    main()
