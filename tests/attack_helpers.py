"""Small models and data shared by the attack tests (not a test module itself)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn


def load_medmnist(data_root: Path, flag: str, n_train: int,
                  n_test: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The first rows of a 1-channel MedMNIST set (28 px) as float [0, 1] tensors per split."""
    path = data_root / flag / f"{flag}.npz"
    if not path.is_file():
        path = data_root / f"{flag}.npz"
    raw = np.load(path)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = torch.from_numpy(raw[f"{split}_images"][:n]).float().div(255.0).unsqueeze(1)
        y = torch.from_numpy(raw[f"{split}_labels"][:n]).long().flatten()
        out[split] = (x, y)
    return out


class TinyCNN(nn.Module):
    """A torchvision-style single-input classifier with BatchNorm and normalisation inside."""

    def __init__(self, in_chans: int = 1, num_classes: int = 2, width: int = 8):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - 0.5) / 0.5)


def train_tiny(x: torch.Tensor, y: torch.Tensor, epochs: int = 4, seed: int = 0) -> TinyCNN:
    torch.manual_seed(seed)
    model = TinyCNN(x.shape[1], int(y.max()) + 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 32):
            idx = perm[i:i + 32]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


class TwoModalTwoHead(nn.Module):
    """Registry convention: two modalities (1 and 3 channels, different sizes), a binary and a 4-class head."""

    def __init__(self, width: int = 6):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                               nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.b = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.heads = nn.ModuleList([nn.Linear(8 * width, 2), nn.Linear(8 * width, 4)])

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        f = torch.cat([self.a(xs[0]), self.b(xs[1])], dim=1)
        return [h(f) for h in self.heads]


def two_modal_batch(n: int = 12, seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(n, 1, 8, 8, generator=g), torch.rand(n, 3, 6, 6, generator=g)], \
        [torch.randint(0, 2, (n,), generator=g), torch.randint(0, 4, (n,), generator=g)]


class ShatteredLinear(nn.Module):
    """A random defence whose single-draw gradient misleads: the wrong-minus-right logit margin is

        s(x) - tau + amp * sin(omega * s(x) + phi),   s(x) = k * mean(x - x0),   phi ~ U(0, 2 pi) per row and pass

    The sine barely changes the value (amp small) but dominates the gradient (amp * omega = 6 > 1), so one draw's
    gradient points the wrong way almost half the time, while the average over draws points along +mean(x).
    Fooling a row needs mean(x - x0) > tau / k, i.e. most of the budget in the right direction.
    """

    def __init__(self, eps: float, x0: float = 0.5, amp: float = 0.01, ratio: float = 6.0, seed: int = 0):
        super().__init__()
        self.x0 = x0
        self.k = 1.0 / eps
        self.tau = 0.8
        self.amp = amp
        self.omega = ratio / amp
        self.gen = torch.Generator().manual_seed(seed)
        self.anchor = nn.Parameter(torch.zeros(()))  # so that libraries can find a device

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        x = xs[0]
        s = self.k * (x - self.x0).flatten(1).mean(dim=1)
        phi = torch.rand(x.shape[0], generator=self.gen) * 2 * math.pi
        margin = s - self.tau + self.amp * torch.sin(self.omega * s + phi) + 0 * self.anchor
        return [torch.stack([torch.zeros_like(margin), margin], dim=1)]  # label 0 is right while margin < 0


class CountingModel(nn.Module):
    """Counts forward passes of the wrapped model."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.calls = 0

    def forward(self, xs):
        self.calls += 1
        return self.model(xs)


def interrupt_on_call(fn, n: int):
    """``fn`` that raises KeyboardInterrupt on its ``n``-th call (Ctrl-C, or a deadline's SIGTERM, mid-suite);
    the returned wrapper's ``calls`` list counts the calls and can be cleared."""
    calls: list[int] = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return fn(*args, **kwargs)

    wrapper.calls = calls
    return wrapper


def train_tiny_run(folder: Path, data_root: Path, model: str, n_test: int, run_dir: str = "run",
                   second: tuple[str, str] = ("breast", "breastmnist")) -> Path:
    """A tiny run of ``model`` trained through the command line on two real MedMNIST sets (1 epoch, 32 pairs);
    ``second``: the second modality's (name, MedMNIST flag)."""
    import yaml

    from mailnet.cli import main

    cfg = {"name": "tiny", "seed": 0,
           "model": {"name": model, "kwargs": {"widths": [8, 8, 16, 16], "stem": "cifar"}},
           "data": {"mode": "unpaired", "size": 28, "equalize": "repeat",
                    "subset": {"train": 32, "val": 16, "test": n_test},
                    "modalities": [{"name": "pneumonia", "source": "medmnist", "flag": "pneumoniamnist", "channels": 1},
                                   {"name": second[0], "source": "medmnist", "flag": second[1], "channels": 1}]},
           "train": {"epochs": 1, "batch_size": 16, "lr": 0.002},
           "eval": {"batch_size": 32, "mc_samples": 1, "partner_draws": 1, "partner_bank": 2}}
    (folder / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    run = folder / run_dir
    assert main(["train", "--config", str(folder / "tiny.yaml"), "--run-dir", str(run), "--data-root",
                 str(data_root), "--quiet", "--device", "cpu"]) == 0
    return run


class NoisyGradientLinear(nn.Module):
    """A random two-class linear model whose wrong-minus-right margin is ``w . x + scale * (r . x) - 0.5`` with
    ``r ~ N(0, I)`` drawn per row and forward pass: the expected gradient is ``w`` (every entry 1 / D), one draw's
    is ``w + scale * r``. A small ``scale`` leaves EOT estimates pointing along ``w``; a huge one drowns it."""

    def __init__(self, scale: float, seed: int = 0):
        super().__init__()
        self.scale = scale
        self.gen = torch.Generator().manual_seed(seed)
        self.anchor = nn.Parameter(torch.zeros(()))

    def seed_noise(self, seed: int) -> None:
        self.gen.manual_seed(seed)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        x = xs[0].flatten(1)
        r = torch.randn(x.shape, generator=self.gen)
        margin = x.mean(dim=1) + self.scale * (r * x).sum(dim=1) - 0.5 + 0 * self.anchor
        return [torch.stack([torch.zeros_like(margin), margin], dim=1)]


class SharedNoiseLinear(NoisyGradientLinear):
    """Like :class:`NoisyGradientLinear` with no signal, and one noise vector per forward pass shared by every row
    of the batch (as Robust-MAIL's random filters are): rows of one pass are not independent."""

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        x = xs[0].flatten(1)
        r = torch.randn(x.shape[1], generator=self.gen)
        margin = self.scale * (x * r).sum(dim=1) + 0 * self.anchor
        return [torch.stack([torch.zeros_like(margin), margin], dim=1)]


class QuantizedMean(nn.Module):
    """A two-class model that reads its input only through ``floor(64 x) / 64`` (zero gradient everywhere: what a
    gradient attack sees of a defence that shatters gradients): wrong-minus-right margin ``mean(q(x)) - 0.5``, plus
    ``N(0, sigma^2)`` per row and pass when ``sigma`` > 0 (a random model). A budget of 16/255 lifts the mean by
    about 0.06, enough to flip rows whose mean lies within that of 0.5."""

    def __init__(self, sigma: float = 0.0, seed: int = 0):
        super().__init__()
        self.sigma = sigma
        self.gen = torch.Generator().manual_seed(seed)
        self.anchor = nn.Parameter(torch.zeros(()))  # so that libraries can find a device

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        margin = (torch.floor(xs[0] * 64) / 64).flatten(1).mean(dim=1) - 0.5 + self.anchor
        if self.sigma:
            margin = margin + self.sigma * torch.randn(margin.shape, generator=self.gen)
        return [torch.stack([torch.zeros_like(margin), margin], dim=1)]  # label 0 is right while margin < 0


def near_half_batch(n: int = 32, seed: int = 0, size: int = 16) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Images whose means lie just below 0.5 (label 0, right on :class:`QuantizedMean` without noise)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(n, 1, size, size, generator=g) * 0.1 + 0.43], [torch.zeros(n, dtype=torch.long)]
