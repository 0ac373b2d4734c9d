"""A/B of EMILA's split mix (``mailnet.layers.fast.split_mix``) against the concatenated + shuffled form.

``units``: one fast EMILA (forward + backward, batch 64, train mode) at each of MAIL's stage shapes, both forms
timed in turn; in ``step`` and ``attack`` the split arm uses the split form in units of at most ``--max-channels``
(default: the library's limit) and the other arm nowhere. ``step``: whole MAIL training steps (batch 64, 2 modalities, Adam at lr 0 so both arms keep the same
weights) in ABBA order; ``attack``: an attack step (the model as ``attack_mode`` sets it, forward and the input
gradient of the summed logits, batch 64) and a no-grad batch-64 inference, ABBA. Prints medians; run on a quiet
machine, with ``OMP_NUM_THREADS`` set::

    OMP_NUM_THREADS=1 python benchmarks/adhoc/split_mix_ab.py units
    OMP_NUM_THREADS=2 python benchmarks/adhoc/split_mix_ab.py step --threads 2 --size 28 --rounds 3
    OMP_NUM_THREADS=2 python benchmarks/adhoc/split_mix_ab.py attack --threads 2 --model mail --rounds 4
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from mailnet.layers.emila import EMILA
from mailnet.layers.fast import split_mix_form
from mailnet.layers.fast.split_mix import SPLIT_MIX_MAX_CHANNELS
from mailnet.models import create_model
from mailnet.models.fast import to_fast

MAX = [SPLIT_MIX_MAX_CHANNELS]  # step / attack: the split arm uses the split form in units this narrow
SHAPES = [(64, 64, 28, 1), (64, 128, 28, 2), (128, 128, 14, 1), (128, 256, 14, 2), (256, 256, 7, 1),
          (256, 512, 7, 2), (512, 512, 4, 1)]  # (in, out, input size, stride) of MAIL's EMILAs at 28 px


def time_units(batch: int, reps: int) -> None:
    for cin, cout, size, stride in SHAPES:
        torch.manual_seed(0)
        unit = to_fast(EMILA(cin, cout, stride)).train()
        x = torch.randn(batch, cin, size, size).contiguous(memory_format=torch.channels_last).requires_grad_(True)
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(reps + 1):
            for split in (True, False):
                with split_mix_form(split, max_channels=10 ** 6):
                    t = time.perf_counter()
                    unit(x).square().mean().backward()
                    times[split].append(time.perf_counter() - t)
        s, c = (statistics.median(times[k][1:]) * 1e3 for k in (True, False))
        print(f"EMILA {cin:>3} -> {cout:>3} at {size:>2} px, stride {stride}: split {s:7.1f} ms   "
              f"shuffled {c:7.1f} ms   split/shuffled {s / c:.2f}", flush=True)


def abba(fn: Callable[[bool], float], rounds: int, label: str) -> None:
    """One warm-up call per form, then ``rounds`` x (split, shuffled, shuffled, split); prints the medians."""
    fn(True), fn(False)
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for split in (True, False, False, True):
            times[split].append(fn(split))
    s, c = statistics.median(times[True]), statistics.median(times[False])
    print(f"{label}, {torch.get_num_threads()} thread(s): split {s:.3f} s   shuffled {c:.3f} s   "
          f"split/shuffled {s / c:.2f}   (medians of {2 * rounds})", flush=True)


def time_steps(size: int, batch: int, rounds: int) -> None:
    torch.manual_seed(0)
    model = create_model("mail", in_chans=[3, 3], num_classes=[2, 2], img_size=size).train()
    x = [torch.rand(batch, 3, size, size) for _ in range(2)]
    y = [torch.randint(0, 2, (batch,)) for _ in range(2)]
    opt = torch.optim.Adam(model.parameters(), lr=0.0)

    def step(split: bool) -> float:
        with split_mix_form(split, max_channels=MAX[0]):
            t = time.perf_counter()
            opt.zero_grad()
            sum(F.cross_entropy(z, t_) for z, t_ in zip(model(x), y)).backward()
            opt.step()
            return time.perf_counter() - t

    abba(step, rounds, f"MAIL training step, batch {batch}, {size} px")


def time_attack(model_name: str, size: int, batch: int, rounds: int) -> None:
    from mailnet.attacks.eot import attack_mode

    torch.manual_seed(0)
    model = create_model(model_name, in_chans=[3, 3], num_classes=[2, 2], img_size=size).eval()
    x = [torch.rand(batch, 3, size, size, requires_grad=True) for _ in range(2)]

    def attack(split: bool) -> float:
        with split_mix_form(split, max_channels=MAX[0]), attack_mode(model):
            t = time.perf_counter()
            torch.autograd.grad(sum(z.sum() for z in model(x)), x)
            return time.perf_counter() - t

    def infer(split: bool) -> float:
        with split_mix_form(split, max_channels=MAX[0]), torch.inference_mode():
            t = time.perf_counter()
            model([v.detach() for v in x])
            return time.perf_counter() - t

    for what, fn in (("attack step", attack), ("no-grad inference", infer)):
        abba(fn, rounds, f"{model_name} {what}, batch {batch}, {size} px")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["units", "step", "attack"])
    ap.add_argument("--model", default="mail", help="attack: mail or robust_mail")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-channels", type=int, default=SPLIT_MIX_MAX_CHANNELS,
                    help="step / attack: widest unit given the split form in the split arm")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    MAX[0] = args.max_channels
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    if args.what == "units":
        time_units(args.batch, args.reps)
    elif args.what == "step":
        time_steps(args.size, args.batch, args.rounds)
    else:
        time_attack(args.model, args.size, args.batch, args.rounds)


if __name__ == "__main__":
    main()
