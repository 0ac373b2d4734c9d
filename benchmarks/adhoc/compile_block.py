"""Does torch.compile (inductor, CPU) speed up training through MAIL's first-stage block? One ERLA block (64 ->
64 channels at 28 px, batch 64, forward + backward of a square loss, train mode) in its reference, fast and compiled
forms, beside a ResNet basic block of the same shape, eager and compiled; medians of 5 timed calls after 1::

    OMP_NUM_THREADS=1 python benchmarks/adhoc/compile_block.py
"""
from __future__ import annotations

import copy
import statistics
import time

import torch
from torchvision.models.resnet import BasicBlock

from mailnet.layers.erla import ERLA
from mailnet.models.fast import to_fast


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cl = torch.channels_last
    ref = ERLA(64, 64, 1).to(memory_format=cl).train()
    fast = to_fast(copy.deepcopy(ref)).train()
    basic = BasicBlock(64, 64).to(memory_format=cl).train()
    x = torch.randn(64, 64, 28, 28).contiguous(memory_format=cl).requires_grad_(True)
    models = {"ERLA reference": ref, "ERLA fast": fast, "basic block": basic}
    for name in list(models):
        t0 = time.time()
        compiled = torch.compile(copy.deepcopy(models[name]))
        compiled(x).square().mean().backward()
        print(f"compiling {name}: {time.time() - t0:.0f} s", flush=True)
        models[f"{name}, compiled"] = compiled
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(6):
        for name, m in models.items():
            t = time.perf_counter()
            m(x).square().mean().backward()
            times[name].append(time.perf_counter() - t)
    for name, ts in times.items():
        print(f"{name:>30}: {1e3 * statistics.median(ts[1:]):7.1f} ms")


if __name__ == "__main__":
    main()
