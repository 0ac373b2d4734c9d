"""What a model costs: parameters, MACs/FLOPs (fvcore), batch-1 latency and training-batch throughput.

Wall-clock numbers on a shared machine drift from minute to minute, so ``compare`` builds every model in one process
and interleaves them inside each repetition (model A, B, C, then A, B, C, ...): the drift hits all models alike and
the *ratios* stay fair even when the absolute times do not.

Counting convention: fvcore's ``FlopCountAnalysis`` counts one fused multiply-add as one "flop", i.e. it counts
MACs; we report that number as MACs and FLOPs = 2 x MACs. It counts convolutions, linear/matmul/einsum, batch norm
and adaptive average pooling; element-wise ops (add, mul, sigmoid, ...), max/min reductions and pooling other than
adaptive average are *not* counted and are listed per model under ``uncounted_ops``.
"""
from __future__ import annotations

import logging
import os
import statistics
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Callable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mailnet.errors import ConfigError, ModelError
from mailnet.export import ListModel

COUNTER = "fvcore.nn.FlopCountAnalysis (1 fused multiply-add counted once = 1 MAC; FLOPs = 2 x MACs)"


@dataclass(frozen=True)
class ProfileSettings:
    """Everything that defines a measurement; stored with every result so a figure can be re-run."""

    modalities: int = 2
    size: int = 128
    in_chans: int = 3
    num_classes: int = 2
    stem: str = "auto"
    threads: int | None = 2
    batch: int = 64
    device: str = "cpu"
    latency_iters: int = 20
    batch_iters: int = 3
    warmup: int = 2
    lr: float = 1e-4
    seed: int = 0
    # the exact architecture of a trained model (``mailnet profile --run``): constructor kwargs over the above,
    # e.g. widths, or per-modality in_chans / num_classes lists
    model_kwargs: dict | None = None

    def input_channels(self) -> list[int]:
        """Channels of each modality's input: the model's own list when given, else ``in_chans`` for all."""
        chans = (self.model_kwargs or {}).get("in_chans")
        return [int(c) for c in chans] if chans else [self.in_chans] * self.modalities

    def head_classes(self) -> list[int]:
        classes = (self.model_kwargs or {}).get("num_classes")
        return [int(k) for k in classes] if classes else [self.num_classes] * self.modalities

    def validate(self) -> None:
        for field in ("modalities", "size", "in_chans", "batch", "latency_iters", "batch_iters"):
            if getattr(self, field) < 1:
                raise ConfigError(f"profile: {field} must be at least 1, got {getattr(self, field)}")
        if self.num_classes < 2:
            raise ConfigError(f"profile: num_classes must be at least 2, got {self.num_classes}")
        if self.warmup < 0:
            raise ConfigError(f"profile: warmup must be >= 0, got {self.warmup}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"profile: threads must be at least 1, got {self.threads}")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"profile: device must be cpu or cuda, got {self.device!r}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"profile: device {self.device!r} asked for but no CUDA GPU is available")


# ---------------------------------------------------------------------------------------------------- counting


def count_parameters(model: nn.Module) -> int:
    """All parameters, trainable or not (buffers such as fixed DCT matrices are not parameters)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, inputs: Sequence[torch.Tensor]) -> dict:
    """MACs of one forward pass on ``inputs`` with fvcore, plus what fvcore could not count.

    Returns ``{"macs", "flops", "macs_by_operator", "uncounted_ops", "counter"}``; ``uncounted_ops`` maps each
    operator type fvcore skipped to the number of times it occurred in the trace.
    """
    was_training = model.training
    model.eval()
    try:
        with _quiet_fvcore(), torch.no_grad():
            from fvcore.nn import FlopCountAnalysis  # its import warns that torch.jit.script is deprecated

            analysis = FlopCountAnalysis(ListModel(model), tuple(inputs))  # the tracer sees plain tensors
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            macs = int(analysis.total())
            by_op = {str(k): int(v) for k, v in sorted(analysis.by_operator().items())}
            uncounted = {str(k): int(v) for k, v in sorted(analysis.unsupported_ops().items())}
    finally:
        model.train(was_training)
    return {"macs": macs, "flops": 2 * macs, "macs_by_operator": by_op, "uncounted_ops": uncounted,
            "counter": COUNTER}


@contextmanager
def _quiet_fvcore() -> Iterator[None]:
    """fvcore and the JIT tracer log a warning per unsupported op; we return that list instead."""
    import warnings

    logger = logging.getLogger("fvcore")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


# ---------------------------------------------------------------------------------------------------- timing


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Use ``threads`` intra-op CPU threads inside the block, then restore the previous count."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds for one call of ``fn``, with the GPU queue drained before and after."""
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


class _ModelBench:
    """One model with its inputs, labels and optimiser, exposing one timed call per measurement kind."""

    def __init__(self, name: str, settings: ProfileSettings):
        from mailnet.engine.randomness import is_stochastic
        from mailnet.models import create_model

        s = settings
        self.name = name
        self.device = torch.device(s.device)
        chans, classes = s.input_channels(), s.head_classes()
        kwargs = {"in_chans": chans, "num_classes": classes, "img_size": s.size, "stem": s.stem,
                  **{k: v for k, v in (s.model_kwargs or {}).items() if k not in ("in_chans", "num_classes")}}
        self.model = create_model(name, **kwargs)
        gen = torch.Generator().manual_seed(s.seed)
        one = [torch.rand((1, c, s.size, s.size), generator=gen) for c in chans]
        self.counts = count_macs(self.model, one)
        self.params = count_parameters(self.model)
        self.stochastic = is_stochastic(self.model, one)  # MC dropout, random filters, noise
        self.model.to(self.device)
        self.one = [x.to(self.device) for x in one]
        self.batch = [torch.rand((s.batch, c, s.size, s.size), generator=gen).to(self.device) for c in chans]
        self.labels = [torch.randint(0, k, (s.batch,), generator=gen).to(self.device) for k in classes]
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=s.lr)

    @torch.inference_mode()
    def _forward(self, xs: list[torch.Tensor]) -> None:
        self.model.eval()
        self.model(xs)

    def latency(self) -> float:
        return _timed(lambda: self._forward(self.one), self.device)

    def forward_batch(self) -> float:
        return _timed(lambda: self._forward(self.batch), self.device)

    def _train_step(self) -> None:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = sum(F.cross_entropy(z, y) for z, y in zip(self.model(self.batch), self.labels))
        loss.backward()
        self.optimizer.step()

    def train_step(self) -> float:
        return _timed(self._train_step, self.device)


def _interleaved(benches: list[_ModelBench], kind: str, iters: int, warmup: int) -> list[list[float]]:
    """Per model, ``iters`` timings of ``kind``, taking the models in turn inside every repetition."""
    for _ in range(warmup):
        for b in benches:
            getattr(b, kind)()
    times: list[list[float]] = [[] for _ in benches]
    for _ in range(iters):
        for i, b in enumerate(benches):
            times[i].append(getattr(b, kind)())
    return times


# ---------------------------------------------------------------------------------------------------- API


def compare(names: Sequence[str], baseline: str | None = None, **settings) -> list[dict]:
    """Profile several models in one process, interleaved; ratios are taken against ``baseline`` (default: first).

    ``settings`` are ``ProfileSettings`` fields (modalities, size, in_chans, num_classes, stem, threads, batch,
    device, latency_iters, batch_iters, warmup, lr, seed). Returns one dict per model, in the order given.
    """
    names = list(dict.fromkeys(names))
    if not names:
        raise ConfigError("profile: no model names given")
    from mailnet.models import list_models

    known = list_models()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ModelError(f"profile: unknown model(s) {', '.join(unknown)}; known models: {', '.join(known)}")
    baseline = baseline or names[0]
    if baseline not in names:
        raise ConfigError(f"profile: baseline {baseline!r} is not among the compared models ({', '.join(names)})")
    try:
        s = ProfileSettings(**settings)
    except TypeError as e:
        raise ConfigError(f"profile: {e}") from None
    s.validate()
    with torch_threads(s.threads if s.device == "cpu" else None):
        torch.manual_seed(s.seed)
        benches = [_ModelBench(n, s) for n in names]
        warm_batch = min(s.warmup, 1)  # batch-sized calls are slow; one warm-up call is enough
        latency = _interleaved(benches, "latency", s.latency_iters, s.warmup)
        forward = _interleaved(benches, "forward_batch", s.batch_iters, warm_batch)
        train = _interleaved(benches, "train_step", s.batch_iters, max(warm_batch, 1))
        threads_used = torch.get_num_threads()
    rows = [_row(b, s, lat, fwd, trn, threads_used) for b, lat, fwd, trn in zip(benches, latency, forward, train)]
    return add_ratios(rows, baseline)


def profile_model(name: str, modalities: int = 2, size: int = 128, **settings) -> dict:
    """Profile one model (see ``compare`` for the settings)."""
    return compare([name], modalities=modalities, size=size, **settings)[0]


def _median_ms(times: list[float]) -> float:
    return 1000.0 * statistics.median(times)


def _row(b: _ModelBench, s: ProfileSettings, lat: list[float], fwd: list[float], trn: list[float],
         threads_used: int) -> dict:
    fwd_ms, train_ms = _median_ms(fwd), _median_ms(trn)
    resolved_stem = _resolved_stem(s)
    return {
        "model": b.name,
        "params": b.params,
        "macs": b.counts["macs"],
        "flops": b.counts["flops"],
        "gmacs": b.counts["macs"] / 1e9,
        "gflops": b.counts["flops"] / 1e9,
        "counter": b.counts["counter"],
        "macs_by_operator": b.counts["macs_by_operator"],
        "uncounted_ops": b.counts["uncounted_ops"],
        "stochastic": b.stochastic,
        "latency_ms": _median_ms(lat),
        "latency_ms_min": 1000.0 * min(lat),
        "forward_batch_ms": fwd_ms,
        "forward_samples_per_s": 1000.0 * s.batch / fwd_ms,
        "train_step_ms": train_ms,
        "train_samples_per_s": 1000.0 * s.batch / train_ms,
        "images_per_sample": s.modalities,
        "settings": {**asdict(s), "stem_resolved": resolved_stem, "threads_used": threads_used,
                     "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "torch": torch.__version__},
        "timings_s": {"latency": lat, "forward_batch": fwd, "train_step": trn},
    }


def _resolved_stem(s: ProfileSettings) -> str:
    from mailnet.layers.stem import resolve_stem

    return resolve_stem(s.stem, s.size)


RATIO_KEYS = ("params", "macs", "latency_ms", "forward_batch_ms", "train_step_ms")


def add_ratios(rows: list[dict], baseline: str) -> list[dict]:
    """Add ``ratio_vs`` and ``ratios`` (model / baseline for params, MACs and the three times) to every row."""
    base = next(r for r in rows if r["model"] == baseline)
    for r in rows:
        r["ratio_vs"] = baseline
        r["ratios"] = {k: (r[k] / base[k] if base[k] else float("nan")) for k in RATIO_KEYS}
    return rows


def format_table(rows: list[dict]) -> str:
    """A fixed-width text table of the headline numbers and the ratios against the baseline."""
    if not rows:
        return ""
    s = rows[0]["settings"]
    base = rows[0].get("ratio_vs", rows[0]["model"])
    head = ("model", "params M", "GMACs", "GFLOPs", "lat b1 ms", f"fwd/s b{s['batch']}", "train ms",
            "train/s", "x params", "x MACs", "x lat", "x train")
    lines = []
    for r in rows:
        q = r.get("ratios", {})
        lines.append((r["model"] + (" *" if r["stochastic"] else ""), f"{r['params'] / 1e6:.2f}",
                      f"{r['gmacs']:.3f}", f"{r['gflops']:.3f}", f"{r['latency_ms']:.1f}",
                      f"{r['forward_samples_per_s']:.1f}", f"{r['train_step_ms']:.0f}",
                      f"{r['train_samples_per_s']:.1f}",
                      *(f"{q[k]:.2f}" if k in q else "-" for k in ("params", "macs", "latency_ms", "train_step_ms"))))
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    fmt = "  ".join("{:<%d}" % w if i == 0 else "{:>%d}" % w for i, w in enumerate(widths))
    out = [f"{s['modalities']} modalities x {s['in_chans']}x{s['size']}x{s['size']}, stem {s['stem_resolved']}, "
           f"device {s['device']}, threads {s['threads_used']}, train batch {s['batch']}; "
           f"ratios (x) vs {base}; throughput in samples/s (1 sample = {s['modalities']} images)",
           fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    out.append(f"MACs counted by {rows[0]['counter']}")
    for r in rows:
        if r["uncounted_ops"]:
            ops = ", ".join(k.replace("aten::", "") for k in r["uncounted_ops"])
            out.append(f"  not counted in {r['model']}: {ops}")
    if any(r["stochastic"] for r in rows):
        out.append("  * random at inference: averaging K draws costs K x the forward figures")
    return "\n".join(out)
