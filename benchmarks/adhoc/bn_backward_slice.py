"""CPU BatchNorm backward on a dense channels-last gradient vs a strided channel slice of a concatenated one.

Ad-hoc script kept as run (2026-11-28, fourth session) so the BENCHMARKS.md figures it produced can be re-run.
Usage: OMP_NUM_THREADS=1 python benchmarks/adhoc/bn_backward_slice.py
"""
import torch, time
torch.set_num_threads(1)
bn = torch.nn.BatchNorm2d(64).train()
x = torch.randn(64, 64, 28, 28).contiguous(memory_format=torch.channels_last).requires_grad_()
big = torch.randn(64, 192, 28, 28).contiguous(memory_format=torch.channels_last)
for name, g in [("cl contiguous", big[:, :64].contiguous(memory_format=torch.channels_last)), ("cl slice", big[:, :64]), ("nchw", big[:, :64].contiguous())]:
    for _ in range(2):
        y = bn(x); t = time.time(); y.backward(g); dt = time.time() - t
    print(name, f"{dt*1000:.1f} ms")
