"""One Robust-MAIL (or MAIL) training step under torch.profiler: self CPU time per operator.

Ad-hoc script kept as run (2026-11-28, fourth session) so the BENCHMARKS.md figures it produced can be re-run.
Usage: OMP_NUM_THREADS=1 python benchmarks/adhoc/profile_train_step.py robust_mail   (or: mail)
"""
import sys, time, torch, torch.nn.functional as F
from torch.profiler import profile, ProfilerActivity
from mailnet.models import create_model
torch.set_num_threads(1)
name = sys.argv[1]
kw = eval(sys.argv[2]) if len(sys.argv) > 2 else {}
m = create_model(name, in_chans=[3,3], num_classes=[2,2], stem="cifar", **kw).train()
opt = torch.optim.Adam(m.parameters(), 1e-3)
xs = [torch.rand(64,3,28,28) for _ in range(2)]; ys=[torch.randint(0,2,(64,)) for _ in range(2)]
def step():
    opt.zero_grad(); loss = sum(F.cross_entropy(z,y) for z,y in zip(m(xs), ys)); loss.backward(); opt.step()
step()
t=time.time(); step(); print(name, kw, "step", time.time()-t, flush=True)
with profile(activities=[ProfilerActivity.CPU]) as p:
    step()
print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=22))
