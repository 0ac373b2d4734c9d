"""PGD and friends: cross-checked against torchattacks on a real-data model, budgets, threat models, masks, EOT."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from attack_helpers import CountingModel, ShatteredLinear, TwoModalTwoHead, load_medmnist, train_tiny, two_modal_batch
from mailnet.attacks.adapters import SingleInput
from mailnet.attacks.eot import expected_correctness, is_random
from mailnet.attacks.pgd import bim, fgsm, mim, pgd
from mailnet.attacks.reference import REFERENCE, reference_attack
from mailnet.errors import ConfigError


@pytest.fixture(scope="module")
def pneu(data_root):
    """A tiny CNN trained briefly on 1000 PneumoniaMNIST images (pneu is too small and skewed to learn fast)."""
    data = load_medmnist(data_root, "pneumoniamnist", 1000, 200)
    model = train_tiny(*data["train"], epochs=3)
    return model, data["test"]


def _acc(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def test_pgd_matches_torchattacks_on_a_real_data_model(pneu):
    import torchattacks  # a dependency: the cross-check must fail, not skip, when it is missing
    cnn, (x, y) = pneu
    wrapped = SingleInput(cnn)
    clean = _acc(cnn, x, y)
    assert clean > 0.75  # the model learned something, so robust accuracy can fall
    for eps in (2 / 255,):
        alpha, steps = eps / 4, 10
        # no random start: both implementations are the same deterministic algorithm -> the same images
        ours = pgd(wrapped, [x], [y], eps=eps, steps=steps, alpha=alpha, random_start=False)[0]
        ref = torchattacks.PGD(cnn, eps=eps, alpha=alpha, steps=steps, random_start=False)(x, y)
        assert torch.allclose(ours, ref, atol=1e-6)
        # random start: different noise, same robust accuracy within noise
        ours_rs = pgd(wrapped, [x], [y], eps=eps, steps=steps, alpha=alpha, random_start=True, seed=1)[0]
        torch.manual_seed(1)
        ref_rs = torchattacks.PGD(cnn, eps=eps, alpha=alpha, steps=steps, random_start=True)(x, y)
        a_ours, a_ref = _acc(cnn, ours_rs, y), _acc(cnn, ref_rs, y)
        assert abs(a_ours - a_ref) <= 0.05, (eps, a_ours, a_ref)
        assert (ours_rs - x).abs().max() <= eps + 1e-6 and ours_rs.min() >= 0 and ours_rs.max() <= 1


def test_accuracy_falls_with_eps_and_reaches_zero(pneu):
    cnn, (x, y) = pneu
    wrapped = SingleInput(cnn)
    accs = [_acc(cnn, x, y)]
    for e in (1, 2, 4, 8, 64):
        adv = pgd(wrapped, [x], [y], eps=e / 255, steps=10, restarts=1)[0]
        accs.append(_acc(cnn, adv, y))
    for lo, hi in zip(accs, accs[1:]):
        assert hi <= lo + 0.02, accs
    assert accs[-1] <= 0.02, accs
    assert accs[3] < accs[0] - 0.1, accs  # 4/255 actually hurts an undefended model


def test_restarts_never_weaken_the_attack(pneu):
    cnn, (x, y) = pneu
    wrapped = SingleInput(cnn)
    one = _acc(cnn, pgd(wrapped, [x], [y], eps=1 / 255, steps=5, restarts=1, seed=3)[0], y)
    three = _acc(cnn, pgd(wrapped, [x], [y], eps=1 / 255, steps=5, restarts=3, seed=3)[0], y)
    assert three <= one  # restarts only replace rows that are still right, with deterministic scoring


def test_per_modality_budget_and_each_threat():
    torch.manual_seed(0)
    model = TwoModalTwoHead().eval()
    xs, ys = two_modal_batch()
    adv = pgd(model, xs, ys, eps=[4 / 255, 0.0], steps=3)
    assert torch.equal(adv[1], xs[1])  # budget 0: modality left clean
    assert (adv[0] - xs[0]).abs().max() <= 4 / 255 + 1e-6 and (adv[0] != xs[0]).any()
    adv = pgd(model, xs, ys, eps=[2 / 255, 8 / 255], steps=3)
    assert (adv[0] - xs[0]).abs().max() <= 2 / 255 + 1e-6
    assert (adv[1] - xs[1]).abs().max() <= 8 / 255 + 1e-6
    assert (adv[1] - xs[1]).abs().max() > 2 / 255 + 1e-6
    for a, x in zip(adv, xs):
        assert a.min() >= 0 and a.max() <= 1 and a.shape == x.shape


def test_masked_rows_do_not_drive_the_attack():
    torch.manual_seed(0)
    model = TwoModalTwoHead().eval()
    xs, ys = two_modal_batch(n=10)
    masks = [torch.arange(10) < 6, torch.arange(10) < 3]
    adv = pgd(model, xs, ys, masks, eps=8 / 255, steps=3, random_start=False)
    for a, x in zip(adv, xs):
        assert torch.equal(a[6:], x[6:])  # rows counted for no task get no gradient
        assert not torch.equal(a[:6], x[:6])
    # only task 1's rows 0-2 count when attacking head 1 alone
    adv = pgd(model, xs, ys, masks, eps=8 / 255, steps=3, random_start=False, task=1)
    assert torch.equal(adv[0][3:], xs[0][3:]) and not torch.equal(adv[0][:3], xs[0][:3])


def test_eot_beats_a_misleading_random_defence():
    eps = 8 / 255
    x = [torch.full((200, 1, 4, 4), 0.5)]
    y = [torch.zeros(200, dtype=torch.long)]
    model = ShatteredLinear(eps, seed=0)
    assert expected_correctness(model, x, y).mean() == 1.0
    no_eot = pgd(model, x, y, eps=eps, steps=10, alpha=eps / 4, random_start=False, eot=1)
    eot = pgd(model, x, y, eps=eps, steps=10, alpha=eps / 4, random_start=False, eot=40)
    acc_no_eot = float(expected_correctness(model, no_eot, y).mean())
    acc_eot = float(expected_correctness(model, eot, y).mean())
    assert acc_eot <= 0.25 and acc_no_eot >= acc_eot + 0.4, (acc_eot, acc_no_eot)


def test_eot_draws_one_forward_pass_each():
    eps = 8 / 255
    model = CountingModel(ShatteredLinear(eps))
    x, y = [torch.full((4, 1, 4, 4), 0.5)], [torch.zeros(4, dtype=torch.long)]
    pgd(model, x, y, eps=eps, steps=3, eot=5, restarts=1)
    assert model.calls == 15


def test_reference_protocol_is_exact():
    assert REFERENCE == {"steps": 10, "alpha_ratio": 0.25, "random_start": False, "restarts": 1, "eot": 1,
                         "loss": "ce"}
    torch.manual_seed(0)
    model = CountingModel(TwoModalTwoHead().eval())
    xs, ys = two_modal_batch()
    ref = reference_attack(model, xs, ys, eps=4 / 255)
    assert model.calls == 10  # 10 steps, one draw each, no restarts, no scoring passes
    same = pgd(model, xs, ys, eps=4 / 255, steps=10, alpha=1 / 255, random_start=False)
    for a, b in zip(ref, same):
        assert torch.equal(a, b)


def test_variants_stay_in_budget_and_hurt():
    torch.manual_seed(0)
    model = TwoModalTwoHead().eval()
    xs, _ = two_modal_batch(n=32)
    with torch.no_grad():
        ys = [z.argmax(1) for z in model(xs)]  # clean accuracy 1 by construction
    for attack in (fgsm, bim, mim):
        adv = attack(model, xs, ys, eps=64 / 255)
        for a, x in zip(adv, xs):
            assert (a - x).abs().max() <= 64 / 255 + 1e-6 and a.min() >= 0 and a.max() <= 1
        assert expected_correctness(model, adv, ys).mean() < 1.0, attack.__name__
    rs = fgsm(model, xs, ys, eps=4 / 255, random_start=True, seed=0)
    assert all((a - x).abs().max() <= 4 / 255 + 1e-6 for a, x in zip(rs, xs))


def test_dlr_loss_runs_on_binary_and_multiclass_heads():
    torch.manual_seed(0)
    model = TwoModalTwoHead().eval()
    xs, ys = two_modal_batch()
    adv = pgd(model, xs, ys, eps=4 / 255, steps=3, loss="dlr")
    assert all(torch.isfinite(a).all() for a in adv)


def test_bad_inputs_fail_with_one_line_errors():
    model = TwoModalTwoHead().eval()
    xs, ys = two_modal_batch()
    with pytest.raises(ConfigError, match="in \\[0, 1\\]"):
        pgd(model, [xs[0] * 255, xs[1]], ys, eps=4 / 255)
    with pytest.raises(ConfigError, match="list of image tensors"):
        pgd(model, xs[0], ys, eps=4 / 255)
    with pytest.raises(ConfigError, match="per-modality budgets"):
        pgd(model, xs, ys, eps=[1 / 255] * 3)
    with pytest.raises(ConfigError, match="unknown attack loss"):
        pgd(model, xs, ys, eps=1 / 255, loss="hinge")
    with pytest.raises(ConfigError, match=r"a budget\? pass it by name: eps=0.031"):
        pgd(model, xs, ys, 8 / 255)  # the 4th positional argument is the masks


def test_budgets_may_be_written_as_the_command_line_writes_them():
    model = TwoModalTwoHead().eval()
    xs, ys = two_modal_batch()
    as_float = pgd(model, xs, ys, eps=8 / 255, steps=2, seed=0)
    as_text = pgd(model, xs, ys, eps="8/255", steps=2, seed=0)
    per_mod = pgd(model, xs, ys, eps=["8/255", 8 / 255], steps=2, seed=0)
    assert all(torch.equal(a, b) and torch.equal(a, c) for a, b, c in zip(as_float, as_text, per_mod))
    with pytest.raises(ConfigError, match="cannot read 'eight'"):
        pgd(model, xs, ys, eps="eight")


def test_robust_mail_draws_are_replayable_and_attackable():
    from mailnet.models import create_model

    model = create_model("robust_mail", in_chans=[1, 1], num_classes=[2, 2], img_size=28, widths=[8, 16, 16, 32],
                         stem="cifar").eval()
    xs = [torch.rand(3, 1, 28, 28), torch.rand(3, 1, 28, 28)]
    ys = [torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long)]
    model.seed_noise(5)
    a = model(xs)
    model.seed_noise(5)
    b = model(xs)
    c = model(xs)
    assert torch.equal(a[0], b[0]) and not torch.equal(b[0], c[0])  # replayed draw, then a fresh one
    adv = pgd(model, xs, ys, eps=4 / 255, steps=2, eot=2)
    assert all((p - x).abs().max() <= 4 / 255 + 1e-6 for p, x in zip(adv, xs))
    assert not model.training


def test_is_random_tells_randomness_from_float_noise():
    """Summation-order noise (as some GPU kernels give) must not make a deterministic model 'random' (no
    best-iterate or carry-over bookkeeping, EOT on: a higher robust accuracy); a random defence still is."""

    class Jitter(nn.Module):
        def __init__(self, scale: float):
            super().__init__()
            self.scale = scale
            self.lin = nn.Linear(12, 3)

        def forward(self, xs):
            z = self.lin(xs[0].flatten(1))
            return [z * (1 + self.scale * torch.randn(()))]

    xs = [torch.rand(8, 3, 2, 2)]
    torch.manual_seed(0)
    assert not is_random(Jitter(1e-7), xs)
    assert is_random(Jitter(1e-2), xs)
    assert is_random(ShatteredLinear(eps=4 / 255), [torch.rand(8, 1, 4, 4)])


def test_nan_budgets_and_nan_pixels_are_refused():
    """NaN passed `e < 0 or e > 1` and left every image unperturbed (robust accuracy = clean accuracy), and NaN
    pixels passed the [0, 1] check."""
    model = TwoModalTwoHead().eval()
    xs, ys = two_modal_batch(n=4)
    for eps in (float("nan"), [4 / 255, float("nan")], 4):
        with pytest.raises(ConfigError, match=r"eps: budgets must lie in \[0, 1\]"):
            pgd(model, xs, ys, eps=eps, steps=2)
    with pytest.raises(ConfigError, match="budgets must lie"):
        fgsm(model, xs, ys, eps=float("nan"))
    bad = [xs[0].clone(), xs[1]]
    bad[0][0, 0, 0, 0] = float("nan")
    with pytest.raises(ConfigError, match=r"modality 0: attack inputs must be pixels in \[0, 1\], got NaN pixels"):
        pgd(model, bad, ys, eps=4 / 255, steps=2)
