"""Does torchattacks' APGD with EOT keep a worse iterate than it found? Its ``x_best`` is the iterate with the highest
loss of *one* draw (the last of the step's EOT draws), so on a random model a lucky early draw can hold the record
while later iterates are better on average. This scores, over many fresh draws, the two iterates one APGD-CE run
hands back: ``x_best`` (what mailnet's AutoAttack-rand uses) and ``x_best_adv`` (the last iterate a draw got wrong).

Ad-hoc script (eighteenth session), kept so the BENCHMARKS.md figure it produced can be re-run:
    OMP_NUM_THREADS=1 python benchmarks/adhoc/apgd_eot_selection.py RUN_DIR [rows] [eps_255] [steps] [eot] [draws]
"""
import os
import sys
import time
from pathlib import Path

import torch
import torchattacks

from mailnet.attacks.autoattack import FlatView
from mailnet.attacks.eot import attack_mode, expected_correctness
from mailnet.attacks.subset import select_subset, stack_batches
from mailnet.engine.randomness import reseed
from mailnet.engine.runs import load_run

run = Path(sys.argv[1])
n_rows, eps_255, steps, eot, draws = (int(a) for a in (sys.argv[2:] + ["64", "4", "20", "10", "32"][len(sys.argv) - 2:]))
model, data, _ = load_run(run, which="best", device=torch.device("cpu"),
                          data_root=os.environ.get("MAILNET_DATA", "../shared/data"))
rows = select_subset(stack_batches(data.loader("test", 64, partner_seed=0)), n_rows, seed=0)
task = 0
keep = rows.masks[task].nonzero().flatten()
xs, ys = [x[keep] for x in rows.images], [y[keep] for y in rows.labels]
eps = eps_255 / 255
reseed(model, 0)
t0 = time.time()
with attack_mode(model):
    view = FlatView(model, xs, [eps] * len(xs), task)
    flat = view.encode()
    with torch.no_grad():
        clean = expected_correctness(model, xs, ys, draws)[task]
    apgd = torchattacks.APGD(view, norm="Linf", eps=eps, steps=steps, n_restarts=1, seed=0, loss="ce", eot_iter=eot)
    torch.manual_seed(0)
    x_best, _, _, x_best_adv = apgd.attack_single_run(flat, ys[task])
    with torch.no_grad():
        a = expected_correctness(model, view.decode(x_best), ys, draws)[task]
        b = expected_correctness(model, view.decode(x_best_adv), ys, draws)[task]
print(f"{run.name}: {len(keep)} rows of task {task}, eps {eps_255}/255, APGD-CE {steps} it x EOT {eot}, "
      f"scored over {draws} draws: clean {clean.mean():.3f}, x_best {a.mean():.3f}, x_best_adv {b.mean():.3f}, "
      f"(x_best_adv lower on {(b < a).sum().item()}, higher on {(b > a).sum().item()} rows); "
      f"{time.time() - t0:.0f} s", flush=True)
