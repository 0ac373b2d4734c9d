"""Where a depthwise convolution's backward spends its time on CPU, and one alternative for the 5x5 weight gradient.

Fast MAIL's training step spends ~40% of its time in convolution backward (``benchmarks/profile_mail.py``). This
times, at MAIL's depthwise shapes (batch 64, channels-last), the forward, the input gradient and the weight
gradient separately (``aten::convolution_backward`` with one output mask at a time), and computes the 5x5
weight gradient two other ways that give the same numbers: as one grouped convolution of the padded input with
the output gradient as its kernel (batch and channels swapped), and assembled from four 3x3 weight gradients on
the four 3x3-tap corner windows of the 5x5 kernel (shifted windows of the padded input).

    OMP_NUM_THREADS=1 python benchmarks/adhoc/depthwise_backward.py [--reps 7] [--threads 1]

Ad-hoc script (tenth session, 2026-11-29), kept for BENCHMARKS.md (Speed).
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

CL = torch.channels_last
backward = torch.ops.aten.convolution_backward


def median_ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * sorted(times)[reps // 2]


def from_3x3_windows(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The 5x5 depthwise weight gradient (stride 1, padding 2) from four 3x3 ones: window (oi, oj) of the 5x5
    taps is a 3x3 conv, padding 0, on the padded input cropped at (oi, oj)."""
    chans, size = x.shape[1], x.shape[-1]
    xp = F.pad(x, (2, 2, 2, 2))
    w3 = torch.empty(chans, 1, 3, 3)
    part = {}
    for oi in (0, 2):
        for oj in (0, 2):
            window = xp[:, :, oi:oi + size + 2, oj:oj + size + 2].contiguous(memory_format=CL)
            part[oi, oj] = backward(g, window, w3, None, [1, 1], [0, 0], [1, 1], False, [0, 0], chans,
                                    [False, True, False])[1]
    out = torch.empty(chans, 1, 5, 5)
    out[..., 0:3, 0:3] = part[0, 0]
    out[..., 0:3, 3:5] = part[0, 2][..., :, 1:3]
    out[..., 3:5, 0:3] = part[2, 0][..., 1:3, :]
    out[..., 3:5, 3:5] = part[2, 2][..., 1:3, 1:3]
    return out


def case(batch: int, chans: int, size: int, k: int, reps: int) -> None:
    x = torch.randn(batch, chans, size, size).contiguous(memory_format=CL)
    g = torch.randn(batch, chans, size, size).contiguous(memory_format=CL)
    w = torch.randn(chans, 1, k, k)
    pad = k // 2
    args = (g, x, w, None, [1, 1], [pad, pad], [1, 1], False, [0, 0], chans)

    def by_conv() -> torch.Tensor:
        xp = F.pad(x, (pad, pad, pad, pad)).transpose(0, 1).reshape(1, chans * batch, size + 2 * pad, size + 2 * pad)
        return F.conv2d(xp, g.transpose(0, 1).reshape(chans, batch, size, size), groups=chans).view_as(w)

    ref = backward(*args, [False, True, False])[1]
    rel = ((by_conv() - ref).abs().max() / ref.abs().max()).item()
    fwd = median_ms(lambda: F.conv2d(x, w, None, 1, pad, 1, chans), reps)
    gin = median_ms(lambda: backward(*args, [True, False, False]), reps)
    gw = median_ms(lambda: backward(*args, [False, True, False]), reps)
    alt = median_ms(by_conv, reps)
    line = (f"{k}x{k} depthwise, {chans:3d} ch at {size:2d} px: forward {fwd:6.1f} ms, input grad {gin:6.1f} ms, "
            f"weight grad {gw:6.1f} ms (as a grouped conv {alt:6.1f} ms, rel. diff {rel:.0e}")
    if k == 5:
        rel3 = ((from_3x3_windows(g, x) - ref).abs().max() / ref.abs().max()).item()
        line += f"; from 3x3 windows {median_ms(lambda: from_3x3_windows(g, x), reps):6.1f} ms, rel. diff {rel3:.0e}"
    print(line + ")")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for chans, size in ((64, 28), (128, 14), (256, 7), (512, 4)):
        for k in (3, 5):
            case(64, chans, size, k, args.reps)


if __name__ == "__main__":
    main()
