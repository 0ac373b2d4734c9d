"""Two more ways to compute the 5x5 depthwise weight gradient that dominates fast MAIL's CPU backward.

oneDNN's 5x5 depthwise weight gradient is many times its 3x3 one at MAIL's shapes (``depthwise_backward.py``).
This times, at those shapes (batch 64, channels-last, stride 1, 'same' padding), oneDNN's against (a) torch's own
non-oneDNN CPU path (``torch.backends.mkldnn.flags(enabled=False)``) and (b) the gradient written as 25 shifted
products summed over batch and pixels, compiled by ``torch.compile`` (inductor, C++), with the compile time; and
checks that all three agree.

    OMP_NUM_THREADS=1 python benchmarks/adhoc/depthwise5_weight_grad_paths.py [--reps 5]

Ad-hoc script (twenty-second session), kept for BENCHMARKS.md (Speed).
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from depthwise_backward import CL, backward, median_ms  # the sibling script (run from this folder's path)


def shifted_products(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """dW[c, i, j] = sum over batch and pixels of g * x shifted by (i - 2, j - 2), zero outside."""
    h, w = g.shape[-2:]
    xp = F.pad(x, (2, 2, 2, 2))
    taps = [(g * xp[:, :, i:i + h, j:j + w]).sum((0, 2, 3)) for i in range(5) for j in range(5)]
    return torch.stack(taps, -1).view(-1, 1, 5, 5)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    compiled = torch.compile(shifted_products, dynamic=False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); median ms of {args.reps}")
    print(f"{'shape':>16s} {'3x3 oneDNN':>11s} {'5x5 oneDNN':>11s} {'5x5 no oneDNN':>14s} {'5x5 inductor':>13s} "
          f"{'compile s':>9s} {'max rel diff':>12s}")
    for chans, size in ((64, 28), (128, 14), (256, 7)):
        x = torch.randn(64, chans, size, size).contiguous(memory_format=CL)
        g = torch.randn(64, chans, size, size).contiguous(memory_format=CL)

        def onednn(k: int) -> torch.Tensor:
            w = torch.empty(chans, 1, k, k)
            return backward(g, x, w, None, [1, 1], [k // 2] * 2, [1, 1], False, [0, 0], chans,
                            [False, True, False])[1]

        t3, t5 = median_ms(lambda: onednn(3), args.reps), median_ms(lambda: onednn(5), args.reps)
        with torch.backends.mkldnn.flags(enabled=False):
            plain = onednn(5)
            t_plain = median_ms(lambda: onednn(5), args.reps)
        start = time.perf_counter()
        fused = compiled(g, x)
        compile_s = time.perf_counter() - start
        t_ind = median_ms(lambda: compiled(g, x), args.reps)
        ref = onednn(5)
        diff = max(float((a - ref).abs().max() / ref.abs().max()) for a in (plain, fused))
        print(f"{f'{chans} ch x {size} px':>16s} {t3:11.1f} {t5:11.1f} {t_plain:14.1f} {t_ind:13.1f} {compile_s:9.0f} "
              f"{diff:12.1e}", flush=True)


if __name__ == "__main__":
    main()
