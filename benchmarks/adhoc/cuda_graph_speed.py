"""Would CUDA graphs close MAIL's launch-bound gap on a GPU? Eager vs graph-replayed MAIL and late fusion.

    python benchmarks/adhoc/cuda_graph_speed.py [--sizes 28,128] [--json out.json]      # needs a CUDA GPU

On an H200 (BENCHMARKS.md, Speed, "On a GPU") MAIL's training step and batch-1 latency do not grow from 28 to
128 px: they are the cost of launching ~23,000 ATen calls per step, not arithmetic. A CUDA graph replays all the
kernels of a captured call with one launch, so it measures how much of the gap is launch overhead. Timed per model
and size: batch-1 inference (eval, no grad; graph: copy into static inputs, replay; and MAIL with its modality
streams stacked, :mod:`mailnet.layers.fast.stacked`) and one whole
training step (forward, cross-entropy summed over the heads, backward, Adam with ``capturable=True``; the graph
captures all of it, BatchNorm statistics and dropout included). The graphed outputs are checked against eager ones.
Deterministic models only: Robust-MAIL draws from its own generators at every forward pass, which a replay would
repeat, not redraw. Written before a GPU was available to run it; its first run is its test.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from mailnet.layers.fast import stacked_streams
from mailnet.models import create_model


def timed(fn, iters: int) -> float:
    """Median seconds of ``fn`` over ``iters`` calls, each between two synchronisations."""
    out = []
    for _ in range(iters):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def warm_on_side_stream(fn, n: int = 3) -> None:
    """Capture needs allocator pools and lazy caches (folded BatchNorm, cuDNN plans) settled on a side stream."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(n):
            fn()
    torch.cuda.current_stream().wait_stream(side)


def latency(model: torch.nn.Module, xs: list[torch.Tensor], iters: int) -> dict:
    model.eval()
    with torch.no_grad():
        eager_out = [z.clone() for z in model(xs)]
        eager = timed(lambda: model(xs), iters)
        static = [x.clone() for x in xs]
        warm_on_side_stream(lambda: model(static))
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = model(static)

        def replay():
            for s, x in zip(static, xs):
                s.copy_(x)
            graph.replay()

        graphed = timed(replay, iters)
        diff = max(float((a - b).abs().max()) for a, b in zip(static_out, eager_out))
        with stacked_streams(False):  # the eager figure without MAIL's stacked streams (the default at batch 1)
            unstacked = timed(lambda: model(xs), iters)
            plain_out = model(xs)
        with stacked_streams(True):  # MAIL's streams as one set of calls
            stacked = timed(lambda: model(xs), iters)
            stacked_diff = max(float((a - b).abs().max()) for a, b in zip(model(xs), plain_out))
    return {"eager_ms": 1000 * eager, "graph_ms": 1000 * graphed, "eager_stacked_ms": 1000 * stacked,
            "eager_unstacked_ms": 1000 * unstacked, "max_abs_diff": diff, "stacked_max_abs_diff": stacked_diff}


def train_step(model: torch.nn.Module, xs: list[torch.Tensor], ys: list[torch.Tensor], iters: int) -> dict:
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, capturable=True)

    def step():
        opt.zero_grad(set_to_none=False)  # gradients keep their storage: the graph writes into it
        loss = sum(F.cross_entropy(z, y) for z, y in zip(model(xs), ys))
        loss.backward()
        opt.step()
        return loss

    eager = timed(step, iters)
    warm_on_side_stream(step)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=False)
    with torch.cuda.graph(graph):
        static_loss = step()
    graph.replay()
    torch.cuda.synchronize()
    finite = bool(torch.isfinite(static_loss).item())
    graphed = timed(graph.replay, iters)
    return {"eager_ms": 1000 * eager, "graph_ms": 1000 * graphed, "loss_finite": finite}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mail,resnet18_late_fusion")
    ap.add_argument("--sizes", default="28,128")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--json")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("cuda_graph_speed.py: needs a CUDA GPU (CUDA graphs exist only there)")
    dev = torch.device("cuda")
    results = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "batch": args.batch, "rows": []}
    print(json.dumps({k: v for k, v in results.items() if k != "rows"}))
    for size in (int(s) for s in args.sizes.split(",")):
        stem = "cifar" if size < 96 else "imagenet"
        for name in args.models.split(","):
            torch.manual_seed(0)
            model = create_model(name, in_chans=[3, 3], num_classes=[2, 2], img_size=size, stem=stem).to(dev)
            one = [torch.rand(1, 3, size, size, device=dev) for _ in range(2)]
            batch = [torch.rand(args.batch, 3, size, size, device=dev) for _ in range(2)]
            labels = [torch.randint(0, 2, (args.batch,), device=dev) for _ in range(2)]
            row = {"model": name, "size": size}
            for kind, fn in (("latency_b1", lambda: latency(model, one, args.iters)),
                             (f"train_step_b{args.batch}", lambda: train_step(model, batch, labels, args.iters))):
                try:
                    row[kind] = fn()
                except Exception as e:  # a model that cannot be captured is a finding, not a crash of the script
                    row[kind] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
                print(f"{size} px {name} {kind}: {json.dumps(row[kind])}", flush=True)
            results["rows"].append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
