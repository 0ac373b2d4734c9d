"""The gradient-agreement probe: two independent EOT gradient estimates of a random model, compared.

It must tell a random model whose EOT gradient carries the expected direction from one whose single-draw noise
drowns it (where a gradient attack only takes random steps and its robust accuracy is no evidence), and ``mailnet
attack``'s sanity checks must fail loudly on the latter.
"""
from __future__ import annotations

import pytest
import torch

from attack_helpers import NoisyGradientLinear, TwoModalTwoHead, two_modal_batch
from mailnet.attacks.gradient_agreement import measure, summary
from mailnet.attacks.sanity import failures, run_sanity
from mailnet.attacks.subset import rows_from_tensors
from mailnet.attacks.suite import SuiteSettings, run_suite

NAME = "EOT gradient estimates agree"


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
