"""Issue 6's suggestion "channel shuffle folded into the following grouped 1x1 convolution's weight order", timed.

EMILA computes mix(shuffle(cat(a, b, c))) with a 2-group 1x1 mix. Only the *set* of channels each mix group reads
matters (their order within a group can move into the weight's columns), and each group reads runs of
block/2 consecutive channels of cat(a, b, c). So the shuffle can be replaced by one gather of those runs straight
from the branches (forward) and one gather of the gradient back into per-branch dense tensors (backward), with the
mix weight's columns permuted: 2 full-size copies per unit instead of cat + shuffle + shuffle backward + the
per-branch contiguous copies. This script checks that the two forms agree and times them, interleaved:

    OMP_NUM_THREADS=1 python benchmarks/adhoc/shuffle_fold_ab.py units [--reps 7]   # shuffle + mix alone
    OMP_NUM_THREADS=1 python benchmarks/adhoc/shuffle_fold_ab.py step [--rounds 8]  # fast MAIL's training step
    OMP_NUM_THREADS=1 python benchmarks/adhoc/shuffle_fold_ab.py profile            # where the step's copies go

``units``: forward+backward of the shuffle and mix at MAIL's stage shapes (batch 64, 16 shuffle groups).
``step``: batch 64, 2 modalities x 3 channels at 28 px (CIFAR stem), summed cross-entropy, backward, Adam at lr 0
(both arms keep the same weights, dropout re-seeded per step), the fast EMILA's forward patched to the folded form
in one arm; rounds in ABBA order so that neither arm always runs first.

Ad-hoc script (tenth session, 2026-11-29); the form it tests was not adopted (BENCHMARKS.md, Speed).
"""
from __future__ import annotations

import argparse
import time
from unittest import mock

import torch
import torch.nn.functional as F

from mailnet.layers.fast import FastEMILA
from mailnet.layers.fast.ops import conv_bn, shuffle_channels_last
from mailnet.models import create_model

CL = torch.channels_last


def gather_plan(sizes: list[int], groups: int, mix_groups: int):
    """Pieces (branch, start, stop) in gathered order, per-branch gradient ranges, and the mix column order."""
    total = sum(sizes)
    block = total // groups
    source = [(j % groups) * block + j // groups for j in range(total)]  # shuffled position -> channel of cat
    per = total // mix_groups
    order, columns = [], []
    for m in range(mix_groups):
        chans = sorted((source[p], p - m * per) for p in range(m * per, (m + 1) * per))
        order += [c for c, _ in chans]
        columns.append([p for _, p in chans])
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    pieces: list[list[int]] = []
    for c in order:
        b = max(i for i, s in enumerate(starts) if s <= c)
        local = c - starts[b]
        if pieces and pieces[-1][0] == b and pieces[-1][2] == local:
            pieces[-1][2] += 1
        else:
            pieces.append([b, local, local + 1])
    back: list[list[tuple[int, int, int]]] = [[] for _ in sizes]
    t = 0
    for b, s, e in pieces:
        back[b].append((s, t, t + e - s))
        t += e - s
    return pieces, [[(ts, te) for _, ts, te in sorted(r)] for r in back], torch.tensor(columns)


class GatherRuns(torch.autograd.Function):
    """Forward: the pieces of the branches, concatenated; backward: each branch's gradient as one dense tensor."""

    @staticmethod
    def forward(ctx, pieces, back, *branches):  # noqa: D102
        ctx.back = back
        return torch.cat([branches[b][:, s:e] for b, s, e in pieces], 1).contiguous(memory_format=CL)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        grad = grad.contiguous(memory_format=CL)
        return (None, None, *[torch.cat([grad[:, s:e] for s, e in r], 1).contiguous(memory_format=CL)
                              for r in ctx.back])


def median_ms(times: list[float]) -> float:
    return 1e3 * sorted(times)[len(times) // 2]


def compare(batch: int, c_in: int, out: int, size: int, reps: int) -> None:
    sizes = [out, c_in, c_in]
    total = sum(sizes)
    weight = torch.randn(out, total // 2, 1, 1)
    branches = [torch.randn(batch, s, size, size).contiguous(memory_format=CL).requires_grad_() for s in sizes]
    grad_out = torch.randn(batch, out, size, size).contiguous(memory_format=CL)
    pieces, back, columns = gather_plan(sizes, 16, 2)
    index = columns.repeat_interleave(out // 2, 0)
    folded = torch.gather(weight.flatten(1), 1, index).view_as(weight).contiguous()

    def shuffled() -> torch.Tensor:
        u = F.conv2d(shuffle_channels_last(torch.cat(branches, 1), 16), weight, groups=2)
        u.backward(grad_out)
        return u

    def gathered() -> torch.Tensor:
        u = F.conv2d(GatherRuns.apply(pieces, back, *branches), folded, groups=2)
        u.backward(grad_out)
        return u

    results = {}
    for name, fn in (("shuffle", shuffled), ("fold", gathered)):
        for b in branches:
            b.grad = None
        results[name] = (fn(), [b.grad.clone() for b in branches])
    (ua, ga), (ub, gb) = results["shuffle"], results["fold"]
    rel = (ua - ub).abs().max().item() / ua.abs().max().item()
    grad_equal = all(torch.equal(x, y) for x, y in zip(ga, gb))
    times: dict[str, list[float]] = {"shuffle": [], "fold": []}
    for _ in range(reps):
        for name, fn in (("shuffle", shuffled), ("fold", gathered)):
            for b in branches:
                b.grad = None
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    a, b = median_ms(times["shuffle"]), median_ms(times["fold"])
    print(f"{c_in:4d} -> {out:4d} ch at {size:2d} px, {len(pieces)} runs: shuffle {a:7.1f} ms, fold {b:7.1f} ms, "
          f"fold/shuffle {b / a:.2f}; output rel. diff {rel:.1e}, input grads equal: {grad_equal}")


def folded_emila_forward(self: FastEMILA, x: torch.Tensor) -> torch.Tensor:
    """FastEMILA's training-time forward with the shuffle folded into the mix (training only: no fused paths)."""
    m = self.msgdc
    pieces, back, columns = gather_plan([m.out_chans, m.in_chans, m.in_chans], self.shuffle.groups, self.mix.groups)
    branches = [m.branch("pointwise", m.pointwise, m.bn_pointwise, x), m.branch("dw3", m.dw3, m.bn_dw3, x),
                m.branch("dw5", m.dw5, m.bn_dw5, x)]
    v = GatherRuns.apply(pieces, back, *branches)
    w = self.mix.weight
    index = columns.repeat_interleave(w.shape[0] // len(columns), 0)
    u = self.mix_bn(F.conv2d(v, torch.gather(w.flatten(1), 1, index).view_as(w), groups=self.mix.groups))
    p = conv_bn(self, "proj", self.proj, self.proj_bn, x)
    return self.attend(u, p)


def compare_steps(rounds: int) -> None:
    model = create_model("mail", in_chans=[3, 3], num_classes=[2, 2], stem="cifar").train()
    xs = [torch.rand(64, 3, 28, 28) for _ in range(2)]
    ys = [torch.randint(0, 2, (64,)) for _ in range(2)]
    opt = torch.optim.Adam(model.parameters(), lr=0.0)

    def step() -> float:
        torch.manual_seed(1)
        opt.zero_grad()
        loss = sum(F.cross_entropy(z, y) for z, y in zip(model(xs), ys))
        loss.backward()
        opt.step()
        return loss.item()

    def folded() -> float:
        with mock.patch.object(FastEMILA, "forward", folded_emila_forward):
            return step()

    arms = {"fold": folded, "shuffle": step}
    losses = {name: fn() for name, fn in arms.items()}  # warm-up
    times: dict[str, list[float]] = {name: [] for name in arms}
    for r in range(rounds):
        for name in (("fold", "shuffle") if r % 2 == 0 else ("shuffle", "fold")):
            t = time.perf_counter()
            arms[name]()
            times[name].append(time.perf_counter() - t)
    a, b = median_ms(times["shuffle"]) / 1e3, median_ms(times["fold"]) / 1e3
    print(f"training step, {rounds} rounds: shuffle {a:.2f} s, fold {b:.2f} s, fold/shuffle {b / a:.2f}; "
          f"losses {losses['shuffle']:.6f} / {losses['fold']:.6f}")


def profile_copies() -> None:
    """Self CPU time of the copying operators (cat, copy_) in one training step of each arm, under torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    model = create_model("mail", in_chans=[3, 3], num_classes=[2, 2], stem="cifar").train()
    xs = [torch.rand(64, 3, 28, 28) for _ in range(2)]
    ys = [torch.randint(0, 2, (64,)) for _ in range(2)]

    def step() -> None:
        torch.manual_seed(1)
        sum(F.cross_entropy(z, y) for z, y in zip(model(xs), ys)).backward()

    for name in ("shuffle", "fold"):
        patch = mock.patch.object(FastEMILA, "forward", folded_emila_forward) if name == "fold" else mock.MagicMock()
        with patch:
            step()  # warm-up
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                step()
        ops = {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()}
        total = sum(e.self_cpu_time_total for e in prof.key_averages()) / 1e6
        print(f"{name}: cat {ops.get('aten::cat', 0):.2f} s, copy_ {ops.get('aten::copy_', 0):.2f} s, "
              f"convolution backward {ops.get('aten::convolution_backward', 0):.2f} s of {total:.2f} s self CPU")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["units", "step", "profile"])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.what == "step":
        compare_steps(args.rounds)
        return
    if args.what == "profile":
        profile_copies()
        return
    for c_in, out, size in ((64, 64, 28), (64, 128, 14), (128, 128, 14), (128, 256, 7), (256, 256, 7),
                            (256, 512, 4), (512, 512, 4)):
        compare(args.batch, c_in, out, size, args.reps)


if __name__ == "__main__":
    main()
