"""Do a noise-free Robust-MAIL's learned weights survive switching its attention noise on? (no training here)

    OMP_NUM_THREADS=1 python benchmarks/adhoc/noise_switch_probe.py RUN_DIR

RUN_DIR: a run of ``robust_mail`` with ``model.kwargs.attention_noise=false``. Its best weights are scored on the
run's validation and test splits as trained, then loaded into the same architecture with the noise on (EMCAM's
trainable noise weights, absent from the source, keep their initial 1) and scored again; eval mode, 4 draws.
"""
from __future__ import annotations

import sys

import torch

from mailnet.engine import rundir
from mailnet.engine.checkpoint import load_checkpoint, model_weights
from mailnet.engine.evaluation import evaluate
from mailnet.engine.runs import load_run
from mailnet.models import create_model


def main(run: str) -> None:
    base, data, _ = load_run(run)
    tensors, meta = load_checkpoint(rundir.checkpoint_from(run))
    noisy = create_model("robust_mail", **{**meta["model"]["kwargs"], "attention_noise": True})
    missing, unexpected = noisy.load_state_dict(model_weights(tensors), strict=False)
    print("kept initial:", missing, "unused:", unexpected)
    for name, model in (("noise-free", base), ("noise on", noisy)):
        model.eval()
        for split in ("val", "test"):
            r = evaluate(model, data, split, torch.device("cpu"), batch_size=256, mc_samples=4, partner_draws=0, seed=0)
            aucs = ", ".join(f"{t} AUC {m['auc']:.3f}" for t, m in r["tasks"].items())
            print(f"{name:10s} {split:4s} {aucs}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
