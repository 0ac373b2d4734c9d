"""Why Robust-MAIL trains so slowly: gradient size and input signal at initialisation, and optionally a short
training curve, for Robust-MAIL, its ablations and plain MAIL, on real PneumoniaMNIST + BreastMNIST images.

    python benchmarks/robust_mail_trainability.py                    # at initialisation only (seconds)
    python benchmarks/robust_mail_trainability.py --steps 60 --variants robust_mail,no_noise
    python benchmarks/robust_mail_trainability.py --size 128 --variants robust_mail,mail   # upsampled, ImageNet stem

At initialisation (train mode, one batch of 64 pairs): the spread of the pneumonia logit margin over inputs (how much
of the input reaches the head), and the gradient norms of the first and last parameter tensors of summed
cross-entropy. With ``--steps N``: N Adam steps (``--lr``, default 1e-3, optional ``--clip``; batch 64 random pairs, the trainer's loss) per variant,
printing every ``--eval-every`` steps the mean loss, the global gradient norm, and the validation AUC per task in eval mode
(one random draw, 256 validation pairs).

``--size`` upsamples the 28 px images (bilinear) and lets the model pick its stem for that size, as the 128 px configs
do: the noise of Robust-MAIL's attention gate is drawn per feature-map element, so larger maps average more of it away
before the global pooling; the upsampled images carry no more detail than the 28 px ones.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

import mailnet.layers.fast.fast_emila as fast_emila
from mailnet.models import create_model

_attention_logits = fast_emila.attention_logits


def _detached_gate_logits(att, u):
    """EMILA's attention logits with the features detached: the descriptor contains the *sum* over H x W, so in
    Robust-MAIL, whose clipped noisy logits keep the gate out of saturation, every pixel of u receives the whole
    map's gate gradient (x H*W); this variant tests whether that path is what keeps Robust-MAIL from learning."""
    return _attention_logits(att, u.detach())

VARIANTS = {
    "mail": ("mail", {}),
    "robust_mail": ("robust_mail", {}),
    # the same forward pass, but no gradient from the noisy attention gate back into the features (see below)
    "robust_mail_gate_detached": ("robust_mail", {}),
    "no_noise": ("robust_mail", {"attention_noise": False}),
    "no_rpf_no_dropout": ("robust_mail", {"rpf_fraction": 0.0, "mc_dropout": False}),
    "no_rpf": ("robust_mail", {"rpf_fraction": 0.0}),
    "no_randomness": ("robust_mail", {"attention_noise": False, "rpf_fraction": 0.0, "mc_dropout": False}),
    # every source of randomness on, but a weaker attention noise than the spec's std 0.6
    "noise_std_0.3": ("robust_mail", {"noise_std": 0.3}),
    "noise_std_0.15": ("robust_mail", {"noise_std": 0.15}),
}


def signal_and_noise(model, xs, draws: int = 8) -> tuple[float, float]:
    """Pneumonia logit margin, train mode, no gradient: its mean std over ``draws`` forward passes of the same
    inputs (the randomness) and the std over inputs of its per-input mean over draws (what the input decides)."""
    with torch.no_grad():
        margins = torch.stack([(lambda o: o[0][:, 1] - o[0][:, 0])(model(xs)) for _ in range(draws)])
    return margins.std(0).mean().item(), margins.mean(0).std().item()


def load(root: Path, flag: str, size: int = 28) -> dict[str, torch.Tensor]:
    d = np.load(root / flag / f"{flag}.npz")
    out = {}
    for split in ("train", "val"):
        x = torch.from_numpy(d[f"{split}_images"]).float().div(255).unsqueeze(1)
        if size != x.shape[-1]:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)
        out[f"{split}_x"] = x.repeat(1, 3, 1, 1)
        out[f"{split}_y"] = torch.from_numpy(d[f"{split}_labels"]).flatten().long()
    return out


def val_auc(model, p, b) -> list[float]:
    model.eval()
    n = min(256, len(b["val_y"]))
    ip = torch.randperm(len(p["val_y"]), generator=torch.Generator().manual_seed(1))[:n]
    with torch.no_grad():
        out = model([p["val_x"][ip], b["val_x"][:n]])
    model.train()
    return [roc_auc_score(y.numpy(), o.softmax(1)[:, 1].numpy()) for o, y in ((out[0], p["val_y"][ip]),
                                                                            (out[1], b["val_y"][:n]))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of the training curve")
    ap.add_argument("--clip", type=float, default=None, help="clip the global gradient norm to this value")
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--size", type=int, default=28, help="input size (upsampled from 28 px); stem chosen for it")
    ap.add_argument("--data-root", default=os.environ.get("MAILNET_DATA", "../shared/data"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    p, b = (load(Path(args.data_root), flag, args.size) for flag in ("pneumoniamnist", "breastmnist"))
    model_kw = {"stem": "cifar"} if args.size == 28 else {"img_size": args.size, "stem": "auto"}
    for label in args.variants.split(","):
        name, kw = VARIANTS[label]
        fast_emila.attention_logits = _detached_gate_logits if label.endswith("gate_detached") else _attention_logits
        torch.manual_seed(0)
        model = create_model(name, in_chans=[3, 3], num_classes=[2, 2], **model_kw, **kw).train()
        xs, ys = [p["train_x"][:64], b["train_x"][:64]], [p["train_y"][:64], b["train_y"][:64]]
        out = model(xs)
        sum(F.cross_entropy(o, y) for o, y in zip(out, ys)).backward()
        grads = [q.grad.norm().item() for q in model.parameters() if q.grad is not None]
        margin = (out[0][:, 1] - out[0][:, 0]).std().item()
        noise, signal = signal_and_noise(model, xs)
        print(f"{label}: init margin std over inputs {margin:.3g}, grad norm first tensor {grads[0]:.3g}, "
              f"last tensor {grads[-1]:.3g}; over 8 draws: std across draws {noise:.3g}, "
              f"across inputs of the draw mean {signal:.3g}", flush=True)
        if not args.steps:
            continue
        opt, g, losses, t0 = torch.optim.Adam(model.parameters(), lr=args.lr), torch.Generator().manual_seed(0), [], time.time()
        for step in range(1, args.steps + 1):
            ip = torch.randint(len(p["train_y"]), (64,), generator=g)
            ib = torch.randint(len(b["train_y"]), (64,), generator=g)
            out = model([p["train_x"][ip], b["train_x"][ib]])
            loss = F.cross_entropy(out[0], p["train_y"][ip]) + F.cross_entropy(out[1], b["train_y"][ib])
            opt.zero_grad()
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip or float("inf"))
            opt.step()
            losses.append(loss.item())
            if step % args.eval_every == 0:
                auc = val_auc(model, p, b)
                print(f"{label} step {step}: loss {np.mean(losses[-args.eval_every:]):.3f}, grad norm {norm:.2e}, val AUC "
                      f"pneumonia {auc[0]:.3f} breast {auc[1]:.3f} ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
