"""Isolated timings of one 1x1 convolution per MAIL shape: F.conv2d, the library's matmul form, and two other forms.

Ad-hoc script kept as run (2026-11-28, fifth session) so the BENCHMARKS.md figures it produced can be re-run.
Usage: OMP_NUM_THREADS=1 python benchmarks/adhoc/pointwise_shapes.py   (microseconds, best of 3 x 100 calls)
"""
import time, torch, torch.nn.functional as F
from mailnet.layers.fast.ops import pointwise_matmul
torch.set_num_threads(1)
def tm(f, n=100):
    for _ in range(5): f()
    best=1e9
    for r in range(3):
        t=time.perf_counter()
        for _ in range(n): f()
        best=min(best,(time.perf_counter()-t)/n*1e6)
    return best
def linear_form(x, w, b, g):
    B,C,H,W = x.shape; out = w.shape[0]
    xn = x.permute(0,2,3,1).reshape(B*H*W, C)
    if g == 1:
        y = F.linear(xn, w.view(out, C), b)
    else:
        xs = xn.view(B*H*W, g, C//g)
        ws = w.view(g, out//g, C//g)
        y = torch.cat([F.linear(xs[:, i], ws[i]) for i in range(g)], 1)
        if b is not None: y = y + b
    return y.view(B,H,W,out).permute(0,3,1,2)
def einsum_form(x, w, b, g):
    B,C,H,W = x.shape; out = w.shape[0]
    xn = x.permute(0,2,3,1).reshape(B*H*W, g, C//g)
    y = torch.einsum("ngc,goc->ngo", xn, w.view(g, out//g, C//g)).reshape(B,H,W,out)
    if b is not None: y = y + b
    return y.permute(0,3,1,2)
for (c,hw,out,g) in ((1536,4,512,2),(192,28,64,2),(512,4,512,1),(64,28,64,1),(64,28,64,16),(256,7,256,16),(128,14,128,1),(768,7,256,2),(512,4,512,16)):
    x = torch.randn(1,c,hw,hw).contiguous(memory_format=torch.channels_last)
    w = torch.randn(out, c//g, 1, 1); b = torch.randn(out)
    ref = F.conv2d(x, w, b, 1, 0, 1, g)
    for f in (linear_form, einsum_form):
        assert torch.allclose(f(x,w,b,g), ref, atol=1e-3, rtol=1e-4), f
    r = {"conv2d": tm(lambda: F.conv2d(x, w, b, 1, 0, 1, g)), "bmm(current)": tm(lambda: pointwise_matmul(x, w, b, (1,1), g)),
         "linear": tm(lambda: linear_form(x,w,b,g)), "einsum": tm(lambda: einsum_form(x,w,b,g))}
    print((c,hw,out,g), {k: round(v) for k,v in r.items()})
