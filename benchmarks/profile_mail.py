"""Where MAIL's time goes: torch.profiler over one training step and one batch-1 inference, per operator.

MAIL has about half the MACs of two ResNet-18 branches but a direct implementation is slower on CPU; this script
names the operators responsible (self CPU time, so a conv's time is not also charged to its caller).

    python benchmarks/profile_mail.py                     # reference and fast MAIL, 28 px and 128 px
    python benchmarks/profile_mail.py --impl reference --sizes 28 --top 25
    python benchmarks/profile_mail.py --impl onnx          # batch-1 inference through onnxruntime (fast MAIL)

Settings follow issue 6: 2 modalities (3 channels each), batch 64 for the training step, batch 1 for inference,
2 CPU threads; 28 px uses the CIFAR stem, 128 px the ImageNet stem.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from mailnet.models import create_model


def build(impl: str, size: int, modalities: int, in_chans: int) -> torch.nn.Module:
    """MAIL as the reference implementation or with the fast paths swapped in (same weights either way)."""
    from mailnet.models.fast import to_fast, to_reference

    stem = "cifar" if size < 96 else "imagenet"
    model = create_model("mail", in_chans=[in_chans] * modalities, num_classes=[2] * modalities, img_size=size,
                         stem=stem)
    return to_reference(model) if impl == "reference" else to_fast(model)


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, xs: list[torch.Tensor],
               ys: list[torch.Tensor]) -> None:
    model.train()
    opt.zero_grad(set_to_none=True)
    loss = sum(F.cross_entropy(z, y) for z, y in zip(model(xs), ys))
    loss.backward()
    opt.step()


def profile_call(fn, warmup: int, steps: int, top: int, title: str) -> None:
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            fn()
    wall = (time.perf_counter() - t0) / steps
    print(f"\n=== {title}: {wall * 1000:.1f} ms per call under the profiler ({steps} profiled)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top, max_name_column_width=40))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impl", choices=["reference", "fast", "both", "onnx"], default="both")
    ap.add_argument("--sizes", default="28,128", help="comma-separated image sizes (default 28,128)")
    ap.add_argument("--modalities", type=int, default=2)
    ap.add_argument("--in-chans", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=1, help="profiled training steps (default 1)")
    ap.add_argument("--latency-steps", type=int, default=5, help="profiled batch-1 forwards (default 5)")
    ap.add_argument("--top", type=int, default=15, help="operators listed (default 15)")
    ap.add_argument("--skip-train", action="store_true", help="only profile batch-1 inference")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    impls = ["reference", "fast"] if args.impl == "both" else [args.impl]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for size in (int(s) for s in args.sizes.split(",")):
        shape = (args.in_chans, size, size)
        xs = [torch.rand(args.batch, *shape) for _ in range(args.modalities)]
        ys = [torch.randint(0, 2, (args.batch,)) for _ in range(args.modalities)]
        one = [x[:1].clone() for x in xs]
        for impl in impls:
            tag = f"MAIL {impl}, {args.modalities} x {shape}"
            if impl == "onnx":
                profile_onnx(size, args, one, tag)
                continue
            model = build(impl, size, args.modalities, args.in_chans)
            if not args.skip_train:
                opt = torch.optim.Adam(model.parameters(), lr=1e-4)
                profile_call(lambda: train_step(model, opt, xs, ys), 1, args.steps, args.top,
                             f"{tag}: training step, batch {args.batch}")
            model.eval()
            with torch.inference_mode():
                profile_call(lambda: model(one), 2, args.latency_steps, args.top, f"{tag}: inference, batch 1")


def profile_onnx(size: int, args: argparse.Namespace, one: list[torch.Tensor], tag: str) -> None:
    """Export the fast model to a temporary ONNX file and time it with onnxruntime (no per-operator table)."""
    import tempfile
    from pathlib import Path

    from mailnet.export import export_onnx, time_onnx

    model = build("fast", size, args.modalities, args.in_chans).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mail.onnx"
        export_onnx(model, path, [(args.in_chans, size, size)] * args.modalities)
        t = time_onnx(path, batch=args.batch, threads=args.threads)
    print(f"\n=== {tag}: onnxruntime {t}")


if __name__ == "__main__":
    main()
