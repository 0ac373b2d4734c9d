"""The gradient-agreement probe: two independent EOT gradient estimates of a random model, compared.

It must tell a random model whose EOT gradient carries the expected direction from one whose single-draw noise
drowns it (where a gradient attack only takes random steps and its robust accuracy is no evidence), and ``mailnet
attack``'s sanity checks must fail loudly on the latter.
"""
from __future__ import annotations

import pytest
import torch

from attack_helpers import NoisyGradientLinear, SharedNoiseLinear, TwoModalTwoHead, two_modal_batch
from mailnet.attacks.gradient_agreement import measure, summary
from mailnet.attacks.sanity import failures, run_sanity
from mailnet.attacks.subset import rows_from_tensors
from mailnet.attacks.suite import SuiteSettings, run_suite

NAME = "EOT gradient estimates agree beyond chance"


def _rows(n: int = 48, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g) * 0.4 + 0.3
    return rows_from_tensors([x], [torch.zeros(n, dtype=torch.long)])


def test_small_noise_agrees_and_huge_noise_does_not():
    rows = _rows()
    calm = measure(NoisyGradientLinear(scale=0.002), rows, draws=4, task_names=["t"])[0]
    wild = measure(NoisyGradientLinear(scale=50.0), rows, draws=4, task_names=["t"])[0]
    # the margin's expected gradient: every entry 1/64 (norm 1/8); one draw adds noise of norm ~ scale * 8
    assert calm.cos_eot > 0.9 and calm.sign_eot > 0.9
    assert abs(wild.cos_eot) < 0.05 and abs(wild.sign_eot - 0.5) < 0.05
    assert wild.grad_norm > 100 * calm.grad_norm
    assert calm.n == wild.n == 48 and calm.draws == 4
    checks = run_sanity([], [calm.to_dict(), wild.to_dict()])
    assert [c.passed for c in checks if c.name == NAME] == [True, False]
    assert "not evidence of robustness" in failures(checks)[0].detail
    assert "t cosine" in summary([calm])


def test_counts_only_each_tasks_rows():
    """Each head on its own rows (masks), chunked like the attacks, in eval mode."""
    images, labels = two_modal_batch(n=10)
    masks = [torch.arange(10) < 6, torch.arange(10) >= 3]
    rows = rows_from_tensors(images, labels, masks)
    out = measure(TwoModalTwoHead(), rows, draws=2, task_names=["p", "q"], batch_size=4)
    assert [(a.task, a.n) for a in out] == [("p", 6), ("q", 7)]
    # measured in eval mode (attack_mode), where this model is deterministic: every estimate is the same gradient
    assert all(a.cos_single == pytest.approx(1.0) and a.cos_eot == pytest.approx(1.0) for a in out)


def test_suite_runs_the_probe_on_random_models_and_mailnet_attack_checks_it():
    rows = _rows(32)
    settings = SuiteSettings(steps=2, restarts=1, eot=3, eval_draws=2, batch_size=16, sanity=True)
    res = run_suite(NoisyGradientLinear(scale=50.0), rows, ["pgd"], [4 / 255], settings=settings, task_names=["t"])
    assert len(res.gradient_agreement) == 1 and res.gradient_agreement[0]["draws"] == 3
    failed = [c for c in failures(run_sanity(res.records, res.gradient_agreement)) if c.name == NAME]
    assert len(failed) == 1
    off = run_suite(NoisyGradientLinear(scale=50.0), rows, ["pgd"], [4 / 255],
                    settings=SuiteSettings(steps=2, restarts=1, eot=3, batch_size=16, sanity=False), task_names=["t"])
    assert off.gradient_agreement == []
    images, labels = two_modal_batch(n=8)
    fixed = run_suite(TwoModalTwoHead().eval(), rows_from_tensors(images, labels), ["pgd"], [4 / 255],
                      settings=SuiteSettings(steps=2, restarts=1, batch_size=8, sanity=True))
    assert fixed.gradient_agreement == []  # deterministic: nothing to estimate


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_draws_shared_by_a_batch_do_not_pass_as_agreement(seed):
    """With one draw per pass for the whole batch, every row of a pass moves together: a standard error over rows
    would be far too small and pure noise would pass about half the time; over groups with their own draws it
    does not."""
    rows = _rows(64, seed=seed)
    model = SharedNoiseLinear(scale=1.0, seed=seed)
    (a,) = measure(model, rows, draws=4, task_names=["t"], batch_size=64)
    assert a.groups == 8
    (check,) = [c for c in run_sanity([], [a.to_dict()]) if c.name == NAME]
    assert not check.passed


def test_a_zero_gradient_is_named_as_such():
    zero = {"task": "t", "n": 8, "draws": 2, "grad_norm": 0.0, "cos_single": 0.0, "cos_eot": 0.0,
            "cos_eot_se": 0.0, "sign_eot": 0.0, "groups": 8}
    (check,) = run_sanity([], [zero])
    assert not check.passed and "input gradient is exactly 0" in check.detail
    few = {**zero, "grad_norm": 1.0, "cos_eot_se": float("nan"), "groups": 2}
    assert run_sanity([], [few]) == []  # too few independent groups for a standard error: no verdict


def test_transfer_surrogate_follows_the_setting():
    from mailnet.attacks.transfer import EXPECTED_DRAW, ExpectedDraw, FrozenDraw
    from mailnet.attacks.suite import transfer_surrogate

    model, other = NoisyGradientLinear(0.1), NoisyGradientLinear(0.2)
    assert isinstance(transfer_surrogate(model, None, SuiteSettings()), FrozenDraw)
    expected = transfer_surrogate(model, None, SuiteSettings(transfer_source=EXPECTED_DRAW))
    assert isinstance(expected, ExpectedDraw) and expected.model is model
    from_run = transfer_surrogate(model, other, SuiteSettings(transfer_source="/runs/other"))
    assert isinstance(from_run, FrozenDraw) and from_run.model is other
