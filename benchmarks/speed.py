"""Before/after speed of MAIL against resnet18_late_fusion, measured side by side in one process.

    python benchmarks/speed.py                               # 28 px (cifar stem) and 128 px (imagenet stem)
    python benchmarks/speed.py --sizes 28 --train-iters 2 --json speed.json
    python benchmarks/speed.py --model robust_mail --sizes 28 --skip-reference   # Robust-MAIL instead of MAIL
    python benchmarks/speed.py --device cuda --train-iters 20 --latency-iters 50  # on a GPU (timed with syncs)

Three models per size, built once and timed in turn inside every repetition (reference MAIL, fast MAIL, baseline,
then again), so load from other jobs on a shared machine hits all three alike and the *ratios* stay fair:

- training step: batch ``--batch`` (64), 2 modalities x 3 channels, Adam, cross-entropy summed over the 2 heads;
- batch-1 inference latency: eval mode, ``torch.inference_mode``;
- with ``--attack-iters N``: one attack step, batch ``--batch``: the model as :func:`mailnet.attacks.eot.attack_mode`
  sets it (eval, parameters frozen), forward and the gradient of the summed logits w.r.t. the inputs.

Reference and fast MAIL hold the very same weights (the fast one is the reference converted in place by
:func:`mailnet.models.fast.to_fast` on a copy), so only the implementation differs.
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from datetime import datetime, timezone

import torch
import torch.nn.functional as F

from mailnet.attacks.eot import attack_mode
from mailnet.models import create_model


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class Subject:
    """One model with its inputs, labels and optimiser."""

    def __init__(self, label: str, model: torch.nn.Module, size: int, batch: int, modalities: int, seed: int,
                 device: torch.device):
        self.label, self.model, self.device = label, model.to(device), device
        gen = torch.Generator().manual_seed(seed)
        shape = (3, size, size)
        self.batch = [torch.rand((batch, *shape), generator=gen).to(device) for _ in range(modalities)]
        self.labels = [torch.randint(0, 2, (batch,), generator=gen).to(device) for _ in range(modalities)]
        self.one = [x[:1].clone() for x in self.batch]
        self.opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def _sync(self) -> None:  # CUDA runs asynchronously: a time is only real once the queue is empty
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def train_step(self) -> float:
        self.model.train()
        self._sync()
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        loss = sum(F.cross_entropy(z, y) for z, y in zip(self.model(self.batch), self.labels))
        loss.backward()
        self.opt.step()
        self._sync()
        return time.perf_counter() - t0

    def attack_step(self) -> float:
        with attack_mode(self.model):
            xs = [x.clone().requires_grad_(True) for x in self.batch]
            self._sync()
            t0 = time.perf_counter()
            torch.autograd.grad(sum(z.sum() for z in self.model(xs)), xs)
            self._sync()
            return time.perf_counter() - t0

    @torch.inference_mode()
    def latency(self) -> float:
        self.model.eval()
        self._sync()
        t0 = time.perf_counter()
        self.model(self.one)
        self._sync()
        return time.perf_counter() - t0


def subjects_for(size: int, args: argparse.Namespace) -> list[Subject]:
    from mailnet.models.fast import to_fast, to_reference

    stem = "cifar" if size < 96 else "imagenet"
    kw = dict(in_chans=[3] * args.modalities, num_classes=[2] * args.modalities, img_size=size, stem=stem)
    torch.manual_seed(args.seed)
    ref = to_reference(create_model(args.model, **kw))
    fast = to_fast(copy.deepcopy(ref))
    base = create_model(args.baseline, **kw)
    out = []
    for label, model in ((f"{args.model}_reference", ref), (f"{args.model}_fast", fast), (args.baseline, base)):
        if label.endswith("_reference") and args.skip_reference:
            continue
        out.append(Subject(label, model, size, args.batch, args.modalities, args.seed, torch.device(args.device)))
    return out


def interleaved(subjects: list[Subject], kind: str, iters: int, warmup: int) -> dict[str, list[float]]:
    for _ in range(warmup):
        for s in subjects:
            getattr(s, kind)()
    times: dict[str, list[float]] = {s.label: [] for s in subjects}
    for _ in range(iters):
        for s in subjects:
            times[s.label].append(getattr(s, kind)())
    return times


def summarise(times: dict[str, list[float]], baseline: str) -> dict[str, dict]:
    base = statistics.median(times[baseline])
    return {k: {"median_ms": 1000 * statistics.median(v), "min_ms": 1000 * min(v),
                "ratio_vs_baseline": statistics.median(v) / base, "times_s": v} for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="28,128")
    ap.add_argument("--model", default="mail", help="the MAIL variant timed (mail or robust_mail)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--modalities", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    ap.add_argument("--train-iters", type=int, default=2, help="timed training steps per model (default 2)")
    ap.add_argument("--latency-iters", type=int, default=10, help="timed batch-1 forwards per model (default 10)")
    ap.add_argument("--train-warmup", type=int, default=1, help="untimed training steps per model first (default 1)")
    ap.add_argument("--baseline", default="resnet18_late_fusion")
    ap.add_argument("--attack-iters", type=int, default=0, help="timed attack steps per model (default 0: none)")
    ap.add_argument("--skip-reference", action="store_true", help="time only fast MAIL and the baseline")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write all timings here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    flags = [f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in vars(args).items()
             if v is not None and v is not False and k != "json"]
    header = {"command": "python benchmarks/speed.py " + " ".join(flags),
              "cpu": cpu_name(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "torch": torch.__version__, "threads": torch.get_num_threads(), "device": args.device,
              "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None}
    print(json.dumps(header))
    results = {"header": header, "sizes": {}}
    for size in (int(s) for s in args.sizes.split(",")):
        subjects = subjects_for(size, args)
        row = {}
        lat = interleaved(subjects, "latency", args.latency_iters, 2)
        row["latency_b1"] = summarise(lat, args.baseline)
        if not args.skip_train:
            trn = interleaved(subjects, "train_step", args.train_iters, args.train_warmup)
            row[f"train_step_b{args.batch}"] = summarise(trn, args.baseline)
        if args.attack_iters:
            att = interleaved(subjects, "attack_step", args.attack_iters, 1)
            row[f"attack_step_b{args.batch}"] = summarise(att, args.baseline)
        results["sizes"][size] = row
        for kind, res in row.items():
            cells = "  ".join(f"{k} {v['median_ms']:.1f} ms (x{v['ratio_vs_baseline']:.2f})" for k, v in res.items())
            print(f"{size} px {kind}: {cells}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
