"""Where one first-stage block's training time goes: torch.profiler over one fast ERLA (64 -> 64 channels at 28
px, batch 64, forward + backward of a square loss, train mode), per operator and input shape, after 3 warm-up
calls; also its plain wall-clock time (mean of 3 calls)::

    OMP_NUM_THREADS=1 python benchmarks/adhoc/profile_block.py
"""
from __future__ import annotations

import time

import torch
from torch.profiler import ProfilerActivity, profile

from mailnet.layers.erla import ERLA
from mailnet.models.fast import to_fast


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    block = to_fast(ERLA(64, 64, 1)).train()
    x = torch.randn(64, 64, 28, 28).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    for _ in range(3):
        block(x).square().mean().backward()
    t = time.perf_counter()
    for _ in range(3):
        block(x).square().mean().backward()
    print(f"fast ERLA 64 -> 64 at 28 px, batch 64, fwd + bwd: {(time.perf_counter() - t) / 3 * 1e3:.1f} ms")
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        block(x).square().mean().backward()
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=25,
                                                            max_name_column_width=34, max_shapes_column_width=80))


if __name__ == "__main__":
    main()
