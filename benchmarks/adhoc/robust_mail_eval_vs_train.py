"""Robust-MAIL's breast validation AUC on the last checkpoint in eval mode vs with batch statistics (2 draws).

Ad-hoc script kept as run (2026-11-28, fourth session) so the BENCHMARKS.md figures it produced can be re-run.
Usage: OMP_NUM_THREADS=1 python benchmarks/adhoc/robust_mail_eval_vs_train.py   (reads benchmarks/work/rob/robust_mail30)
"""
import copy, os, torch
from pathlib import Path
from sklearn.metrics import roc_auc_score
from mailnet.engine.runs import load_run
from mailnet.attacks.subset import stack_batches
torch.set_num_threads(1)
model, data, cfg = load_run(Path("benchmarks/work/rob/robust_mail30"), which="last", device=torch.device("cpu"), data_root=os.environ.get("MAILNET_DATA", "../shared/data"))
rows = stack_batches(data.loader("val", 128, partner_seed=0))
idx = torch.nonzero(rows.masks[1]).flatten()
rows = rows.take(idx)
print(len(rows), [int(m.sum()) for m in rows.masks])
def auc(mode, draws=2):
    m = copy.deepcopy(model); getattr(m, mode)()
    with torch.no_grad():
        probs = [0, 0]
        for _ in range(draws):
            out = m(rows.images)
            for t in range(2): probs[t] = probs[t] + out[t].softmax(1)[:, 1] / draws
    res = []
    for t in (1,):
        mk = rows.masks[t]
        res.append(round(roc_auc_score(rows.labels[t][mk].numpy(), probs[t][mk].numpy()), 3))
    return res
print("eval", auc("eval")); print("train", auc("train"))
