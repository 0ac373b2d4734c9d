"""PGD at 64/255 on a trained run. Mode ``variants``: 10 steps of 16/255 with and without random start, CE or the
margin loss, both heads or one; mode ``steps``: 10-40 steps and smaller step sizes (CE, random start).

Ad-hoc script kept as run (2026-11-28, fourth session) so the BENCHMARKS.md figures it produced can be re-run.
Usage: OMP_NUM_THREADS=1 python benchmarks/adhoc/large_eps_probe.py benchmarks/work/acc10/mail/seed1 24 variants|steps
"""
import os, sys, time, torch
from pathlib import Path
from mailnet.engine.runs import load_run
from mailnet.models.fast import to_fast
from mailnet.attacks.subset import select_subset, stack_batches
from mailnet.attacks.pgd import pgd
from mailnet.attacks.losses import head_correct
from mailnet.engine.randomness import reseed
from mailnet.attacks.suite import attack_mode
torch.set_num_threads(1)
model, data, cfg = load_run(Path(sys.argv[1]), which="best", device=torch.device("cpu"), data_root=os.environ.get("MAILNET_DATA", "../shared/data"))
to_fast(model)
rows = stack_batches(data.loader("test", 64, partner_seed=0))
rows = select_subset(rows, int(sys.argv[2]), seed=0)
reseed(model, 0)
eps = 64/255
def score(adv):
    with attack_mode(model), torch.no_grad():
        out = model(adv)
    return [ (head_correct(o, y)[m]).mean().item() for o, y, m in zip(out, rows.labels, rows.masks)]
print("clean", score(rows.images), flush=True)
if sys.argv[3] == "variants":
    variants = {
     "ce_rs_10": dict(steps=10, random_start=True, loss="ce", alpha=[2.5*eps/10]*2),
     "ce_nors_10": dict(steps=10, random_start=False, loss="ce", alpha=[2.5*eps/10]*2),
     "dlr_rs_10": dict(steps=10, random_start=True, loss="dlr", alpha=[2.5*eps/10]*2),
     "dlr_nors_10": dict(steps=10, random_start=False, loss="dlr", alpha=[2.5*eps/10]*2),
    }
    for k, v in variants.items():
        t = time.time()
        with attack_mode(model):
            adv = pgd(model, rows.images, rows.labels, rows.masks, [eps, eps], restarts=1, seed=0, **v)
        print(k, score(adv), f"{time.time()-t:.0f}s", flush=True)
        with attack_mode(model):
            for task in range(2):
                adv = pgd(model, rows.images, rows.labels, rows.masks, [eps, eps], restarts=1, seed=0, task=task, **v)
                print("  task", task, score(adv)[task], flush=True)
else:
    for steps, a in [(10, 2.5*eps/10), (20, 2.5*eps/20), (20, 4/255), (20, 2/255), (40, 2.5*eps/40)]:
        t = time.time()
        with attack_mode(model):
            adv = pgd(model, rows.images, rows.labels, rows.masks, [eps, eps], steps=steps, alpha=[a, a], random_start=True, restarts=1, seed=0, loss="ce")
        print(steps, round(a*255, 2), score(adv), f"{time.time()-t:.0f}s", flush=True)
