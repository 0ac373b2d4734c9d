"""Dense and grouped 1x1 convolutions in a training step: oneDNN's convolution against the matrix-product form.

The fast path already computes 1x1 convolutions on small CPU batches as one batched matrix product
(``mailnet.layers.fast.ops.pointwise_matmul``), because torch's fallback there is slow. This asks whether the
same form pays at training batch sizes too: forward plus backward (autograd through the matmul) at MAIL's 1x1
shapes, channels-last, both forms timed in turn, the best of two medians each.

    OMP_NUM_THREADS=1 python benchmarks/adhoc/pointwise_train_ab.py --threads 1

Ad-hoc script (nineteenth session, 2026-11-30), kept for BENCHMARKS.md (Speed).
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from depthwise_backward import median_ms  # the sibling script's timer (this folder is on sys.path when run)
from mailnet.layers.fast.ops import pointwise_matmul

# (in channels, out channels, spatial size, groups) of MAIL's 1x1 convolutions at 28 px.
SHAPES = [(64, 64, 28, 1), (192, 64, 28, 1), (64, 128, 28, 1), (128, 128, 14, 1), (256, 256, 7, 1),
          (512, 512, 4, 1), (1536, 512, 4, 1), (128, 128, 14, 4), (64, 64, 28, 4), (64, 64, 28, 16)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for cin, cout, size, groups in SHAPES:
        x = torch.randn(args.batch, cin, size, size).to(memory_format=torch.channels_last).requires_grad_()
        w = torch.randn(cout, cin // groups, 1, 1, requires_grad=True)
        gy = torch.randn(args.batch, cout, size, size).to(memory_format=torch.channels_last)

        def conv() -> None:
            F.conv2d(x, w, None, 1, 0, 1, groups).backward(gy)

        def matmul() -> None:
            pointwise_matmul(x, w, None, (1, 1), groups).backward(gy)

        with torch.no_grad():
            diff = (F.conv2d(x, w, None, 1, 0, 1, groups) - pointwise_matmul(x, w, None, (1, 1), groups)).abs().max()
        t_conv = min(median_ms(conv, args.reps), median_ms(conv, args.reps))
        t_mm = min(median_ms(matmul, args.reps), median_ms(matmul, args.reps))
        print(f"{cin:4d} -> {cout:4d} at {size:2d} px, groups {groups:2d}: conv {t_conv:6.1f} ms, "
              f"matmul {t_mm:6.1f} ms, ratio {t_mm / t_conv:.2f} (max abs diff {diff:.1e})")


if __name__ == "__main__":
    main()
