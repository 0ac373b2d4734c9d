"""How well does a random model at its random variables' expected values stand in for it? (transfer surrogate)

Scores a run's best weights on its validation and test splits with every random variable at its expected value
(``mailnet.layers.noise.expected_draws``, what ``mailnet attack --transfer-surrogate expectation`` runs PGD on):
one deterministic pass, accuracy / AUC / balanced accuracy per task.

    OMP_NUM_THREADS=1 python benchmarks/adhoc/expected_surrogate_eval.py RUN_DIR

Ad-hoc script (twenty-second session), kept for BENCHMARKS.md (Robustness).
"""
from __future__ import annotations

import sys

import torch

from mailnet.engine.evaluation import evaluate
from mailnet.engine.runs import load_run
from mailnet.layers.noise import expected_draws
from mailnet.models.fast import to_fast


def main(run: str) -> None:
    model, data, _ = load_run(run)
    to_fast(model)
    with torch.no_grad(), expected_draws(model):
        for split in ("val", "test"):
            r = evaluate(model, data, split, torch.device("cpu"), batch_size=256, mc_samples=1, partner_draws=0,
                         seed=0)
            print(f"{split:4s} " + "; ".join(f"{t} ACC {m['acc']:.3f} AUC {m['auc']:.3f} balanced {m['bal_acc']:.3f}"
                                             for t, m in r["tasks"].items()), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
