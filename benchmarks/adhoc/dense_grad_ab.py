"""A/B of the fast MSGDC's dense_grad in one process: training steps alternately with and without it (min of 4).

Ad-hoc script kept as run (2026-11-28, fourth session) so the BENCHMARKS.md figures it produced can be re-run.
Usage: OMP_NUM_THREADS=1 python benchmarks/adhoc/dense_grad_ab.py robust_mail   (or: mail)
"""
import sys, time, torch, torch.nn.functional as F
import mailnet.layers.fast.fast_msgdc as fm
from mailnet.layers.fast import ops
from mailnet.models import create_model
torch.set_num_threads(1)
name = sys.argv[1]
torch.manual_seed(0)
m = create_model(name, in_chans=[3,3], num_classes=[2,2], stem="cifar").train()
opt = torch.optim.SGD(m.parameters(), 1e-5)
xs = [torch.rand(64,3,28,28) for _ in range(2)]; ys=[torch.randint(0,2,(64,)) for _ in range(2)]
def step():
    opt.zero_grad(); loss = sum(F.cross_entropy(z,y) for z,y in zip(m(xs), ys)); loss.backward(); opt.step()
res = {"on": [], "off": []}
step()
for r in range(4):
    for mode in ("on", "off"):
        fm.dense_grad = ops.dense_grad if mode == "on" else (lambda x: x)
        t = time.perf_counter(); step(); res[mode].append(time.perf_counter() - t)
print(name, {k: round(min(v), 2) for k, v in res.items()}, {k: [round(x, 1) for x in v] for k, v in res.items()})
