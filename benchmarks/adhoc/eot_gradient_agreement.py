"""How much does one EOT gradient estimate of a random model agree with the next? (obfuscation diagnostic)

Runs only the probe that ``mailnet attack`` runs first on a random model (``mailnet.attacks.gradient_agreement``)
on several runs, for a table: per run and head, on its own rows of the attacked subset (test split, subset seed
0), 2K single-draw input gradients at the clean images, both images perturbed, eval mode, the defence's randomness
on; printed: a single draw's gradient norm, the cosine between two single draws, the cosine between two disjoint
K-draw means (with its standard error) and the share of entries where those two means have the same sign.

    OMP_NUM_THREADS=1 python benchmarks/adhoc/eot_gradient_agreement.py RUN_DIR [RUN_DIR ...] [--eot 10]

Ad-hoc script (twenty-second session), kept for BENCHMARKS.md (Robustness).
"""
from __future__ import annotations

import argparse

from mailnet.attacks.gradient_agreement import measure
from mailnet.attacks.subset import select_subset, stack_batches
from mailnet.engine.randomness import reseed
from mailnet.engine.runs import load_run
from mailnet.models.fast import FAST_CLASSES, to_fast


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--eot", type=int, default=10)
    p.add_argument("--subset", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    print(f"K={args.eot}, {args.subset} rows per task (test split, subset seed 0), gradients at the clean images")
    print(f"{'run':45s} {'task':10s} {'rows':>4s} {'|grad|':>9s} {'cos1':>6s} {'cosK':>6s} {'+-se':>6s} {'signK':>6s}")
    for run in args.runs:
        model, data, _ = load_run(run)
        if any(type(m) in FAST_CLASSES for m in model.modules()):
            to_fast(model)
        rows = select_subset(stack_batches(data.loader("test", 64, partner_seed=0)), args.subset, seed=0)
        reseed(model, args.seed)
        for a in measure(model, rows, args.eot, [t.name for t in data.tasks]):
            print(f"{str(run)[-45:]:45s} {a.task:10s} {a.n:4d} {a.grad_norm:9.3g} {a.cos_single:6.3f} "
                  f"{a.cos_eot:6.3f} {a.cos_eot_se:6.3f} {a.sign_eot:6.3f}", flush=True)


if __name__ == "__main__":
    main()
