"""Batch-1 census of fast MAIL's 1x1 convolutions in the matmul form: calls and time per shape, 5 forwards.

Ad-hoc script kept as run (2026-11-28, fifth session) so the BENCHMARKS.md figure it produced can be re-run.
Usage: OMP_NUM_THREADS=1 python benchmarks/adhoc/pointwise_census.py
"""
import time, collections, torch
import mailnet.layers.fast.ops as ops
from mailnet.models import create_model
torch.set_num_threads(1)
m = create_model("mail", in_chans=[3,3], num_classes=[2,2], stem="cifar").eval()
x = [torch.rand(1,3,28,28) for _ in range(2)]
stats = collections.Counter(); tt = collections.Counter()
orig = ops.pointwise_matmul
def spy(x, w, b, stride, groups):
    t = time.perf_counter(); y = orig(x, w, b, stride, groups); dt = time.perf_counter() - t
    k = (tuple(x.shape[1:]), w.shape[0], groups, tuple(stride)); stats[k] += 1; tt[k] += dt
    return y
ops.pointwise_matmul = spy
with torch.no_grad():
    for _ in range(3): m(x)
    stats.clear(); tt.clear()
    t=time.perf_counter()
    for _ in range(5): m(x)
    tot=(time.perf_counter()-t)/5
print("forward ms", round(tot*1e3,1), "pointwise ms", round(sum(tt.values())/5*1e3,1))
for k in sorted(stats, key=lambda k: -tt[k]):
    print(k, stats[k]//5, round(tt[k]/5*1e3,2))
