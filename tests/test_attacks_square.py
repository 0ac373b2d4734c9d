"""The Square attack (score-based, no gradient): budgets, the averaged output of random models, and a cross-check
against torchattacks' own Square on a one-input model."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from attack_helpers import QuantizedMean, TwoModalTwoHead, near_half_batch, two_modal_batch
from mailnet.attacks.eot import expected_correctness
from mailnet.attacks.pgd import pgd
from mailnet.attacks.square import AveragedPrediction, square
from mailnet.attacks.subset import rows_from_tensors
from mailnet.attacks.suite import SuiteSettings, run_suite
from mailnet.errors import ConfigError

EPS = 16 / 255


def accuracy(model: nn.Module, xs: list[torch.Tensor], ys: list[torch.Tensor], draws: int = 1) -> float:
    return float(expected_correctness(model, xs, ys, draws)[0].mean())


def one_input(net: nn.Module) -> nn.Module:
    """``net`` under the registry convention: a list of one image tensor in, a list of one logit tensor out."""

    class OneInput(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, xs):
            return [self.net(xs[0])]
    return OneInput().eval()


def test_square_breaks_a_model_whose_gradients_are_zero():
    """PGD sees a zero gradient and changes nothing; Square only needs the model's scores."""
    model = QuantizedMean().eval()
    xs, ys = near_half_batch()
    assert accuracy(model, xs, ys) == 1.0
    by_pgd = pgd(model, xs, ys, None, [EPS], steps=10, alpha=[EPS / 4], random_start=True, restarts=1)
    assert accuracy(model, by_pgd, ys) == 1.0
    by_square = square(model, xs, ys, None, EPS, queries=200)
    assert accuracy(model, by_square, ys) <= 0.3
    assert (by_square[0] - xs[0]).abs().max() <= EPS + 1e-6


def test_square_lowers_a_random_models_expected_accuracy_where_eot_pgd_cannot():
    """Per-pass noise on the margin and no gradient: EOT-PGD has nothing to follow, Square's averaged scores
    still find better points. Scored, as the suite does, on fresh draws."""
    xs, ys = near_half_batch()
    model = QuantizedMean(sigma=0.05).eval()
    clean = accuracy(model, xs, ys, 256)
    by_pgd = pgd(model, xs, ys, None, [EPS], steps=10, alpha=[EPS / 4], random_start=True, restarts=1, eot=8)
    by_square = square(model, xs, ys, None, EPS, queries=100, draws=64)
    assert abs(accuracy(model, by_pgd, ys, 256) - clean) <= 0.05
    assert clean - accuracy(model, by_square, ys, 256) >= 0.2


def test_on_a_random_model_square_keeps_lowering_the_margin_after_a_score_says_fooled():
    """The library stops a row at its first "fooled" score; on a random model that means only that one (averaged)
    score flipped, so there every row stays under attack for all its queries: the margins end far past zero."""
    xs, ys = near_half_batch(size=28)  # MedMNIST's size (the library never picks a 1-pixel square on the last row)
    model = QuantizedMean(sigma=1e-3).eval()

    def final_margin(random_model: bool) -> float:
        adv = square(model, xs, ys, None, EPS, queries=400, draws=2, random_model=random_model)
        return float(((torch.floor(adv[0] * 64) / 64).flatten(1).mean(1) - 0.5).mean())

    stopped, kept_on = final_margin(False), final_margin(True)
    assert 0 < stopped < 0.01 and kept_on > stopped + 0.006


def test_averaged_prediction_is_the_log_of_the_mean_softmax_even_for_confident_rows():
    model = QuantizedMean(sigma=0.05).eval()
    xs, _ = near_half_batch(n=4)
    assert AveragedPrediction(model, 1).model is model
    model.gen.manual_seed(3)
    averaged = AveragedPrediction(model, 5)(xs)[0]
    model.gen.manual_seed(3)
    manual = torch.stack([model(xs)[0].softmax(1) for _ in range(5)]).mean(0).log()
    assert torch.allclose(averaged, manual, atol=1e-6)

    class Confident(nn.Module):  # logit gaps of 30 and 40 nats: a floored probability would read both alike
        def forward(self, images):
            return [torch.tensor([[30.0, 0.0], [40.0, 0.0]])]

    margins = AveragedPrediction(Confident(), 4)(xs)[0]
    assert torch.allclose(margins[:, 0] - margins[:, 1], torch.tensor([30.0, 40.0]))


def test_square_respects_budgets_masks_and_frozen_modalities():
    torch.manual_seed(0)
    model = TwoModalTwoHead().eval()
    xs, _ = two_modal_batch(n=12)
    with torch.no_grad():
        ys = [z.argmax(1) for z in model(xs)]
    masks = [torch.arange(12) % 3 != 0, torch.ones(12, dtype=torch.bool)]
    adv = square(model, xs, ys, masks, [8 / 255, 0.0], task=0, queries=30)
    assert torch.equal(adv[1], xs[1])  # budget 0: untouched
    assert (adv[0] - xs[0]).abs().max() <= 8 / 255 + 1e-6 and adv[0].min() >= 0 and adv[0].max() <= 1
    assert torch.equal(adv[0][~masks[0]], xs[0][~masks[0]])  # rows not counted for the task stay clean
    assert not torch.equal(adv[0][masks[0]], xs[0][masks[0]])
    two = square(model, xs, ys, None, [8 / 255, 2 / 255], task=1, queries=30)  # a budget of its own per modality
    assert abs(float((two[0] - xs[0]).abs().max()) - 8 / 255) < 1e-5
    assert abs(float((two[1] - xs[1]).abs().max()) - 2 / 255) < 1e-5
    with pytest.raises(ConfigError, match="pass task="):
        square(model, xs, ys, None, 4 / 255)
    with pytest.raises(ConfigError, match="queries and draws must be >= 1"):
        square(model, xs, ys, None, 4 / 255, task=0, queries=0)


def test_square_matches_torchattacks_square_on_a_one_input_model():
    """Our wrapper (index bits, the multi-input view, every row's best point) against the library's own Square on
    a plain one-input classifier: the same robust accuracy within noise."""
    import torchattacks

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                        nn.Linear(32, 3)).eval()
    x = torch.rand(48, 1, 8, 8)
    with torch.no_grad():
        y = net(x).argmax(1)  # every row right
    ours = square(one_input(net), [x], [y], None, EPS, queries=150, seed=0)[0]
    theirs = torchattacks.Square(net, norm="Linf", eps=EPS, n_queries=150, n_restarts=1, seed=0)(x, y)
    with torch.no_grad():
        acc_ours = float((net(ours).argmax(1) == y).float().mean())
        acc_theirs = float((net(theirs).argmax(1) == y).float().mean())
    assert acc_theirs < 0.7  # the check means something: the library's attack does break rows
    assert abs(acc_ours - acc_theirs) <= 0.15


def test_the_suite_runs_square_and_records_its_settings():
    model = QuantizedMean().eval()
    xs, ys = near_half_batch(n=16)
    res = run_suite(model, rows_from_tensors(xs, ys), ["square"], [EPS], "joint",
                    SuiteSettings(square_queries=60, sanity=False), task_names=["t"])
    (rec,) = res.records
    assert (rec["attack"], rec["steps"], rec["loss"], rec["eot"]) == ("square", 60, "margin", 1)
    assert rec["robust_acc"] < rec["clean_acc"] == 1.0


def test_the_suite_scores_squares_on_a_random_model_with_its_eot_draws(monkeypatch):
    import mailnet.attacks.suite as suite

    calls: list[dict] = []
    real = suite.square
    monkeypatch.setattr(suite, "square", lambda *a, **k: calls.append(k) or real(*a, **k))
    xs, ys = near_half_batch()
    model = QuantizedMean(sigma=0.05).eval()
    res = run_suite(model, rows_from_tensors(xs, ys), ["square"], [EPS], "joint",
                    SuiteSettings(square_queries=100, eot=64, eval_draws=64, sanity=False), task_names=["t"])
    (rec,) = res.records
    assert res.random_model and rec["eot"] == 64
    assert calls and all(k["draws"] == 64 and k["random_model"] for k in calls)
    assert rec["clean_acc"] - rec["robust_acc"] >= 0.2
