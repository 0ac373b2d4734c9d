"""How the suite turns attacks into robust accuracy, on models made so that the weaker bookkeeping gives a
different (too optimistic) number: per-task objectives, best iterates, AutoAttack on random models, and the
reference protocol run as published."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from attack_helpers import ShatteredLinear, TwoModalTwoHead, two_modal_batch
from mailnet.attacks.autoattack import autoattack
from mailnet.attacks.pgd import pgd
from mailnet.attacks.subset import rows_from_tensors
from mailnet.attacks.suite import SuiteSettings, run_suite
from mailnet.errors import ConfigError


class TugOfWar(nn.Module):
    """Two heads reading the same pixel p (the mean of a 2x2 image) that pull the attack in opposite directions:
    head A (label 1) is right while p > 0.5 with a steep logit 100 (p - 0.5); head B (label 0) is right while
    p < 0.55 with a shallow logit 10 (p - 0.55). Near p = 0.52 both are right; lowering p fools A, raising it fools
    B, and in a summed loss A's steep gradient always wins."""

    def forward(self, xs):
        p = xs[0].flatten(1).mean(dim=1)
        zero = torch.zeros_like(p)
        return [torch.stack([zero, 100 * (p - 0.5)], 1), torch.stack([zero, 10 * (p - 0.55)], 1)]


def _tug_rows(n=8):
    x = torch.full((n, 1, 2, 2), 0.52)
    return rows_from_tensors([x], [torch.ones(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)])


def test_each_head_is_attacked_on_its_own_so_a_steeper_head_cannot_shield_another():
    rows = _tug_rows()
    eps = [0.05]
    acc = {}
    for objective in ("summed", "per-task"):
        res = run_suite(TugOfWar(), rows, ["pgd"], eps, "joint",
                        SuiteSettings(steps=10, restarts=1, batch_size=8, sanity=False, objective=objective))
        acc[objective] = [r["robust_acc"] for r in res.records]
        assert {r["objective"] for r in res.records} == {objective}
    assert acc["summed"][1] >= 0.75  # B survives the summed attack (from most random starts) ...
    assert acc["per-task"] == [0.0, 0.0]  # ... but not an attack on B itself


class Overshoot(nn.Module):
    """One head (label 0) fooled only inside the narrow band |p - 0.6| < 0.02: a step of 0.1 from p = 0.51 lands in
    it (p = 0.61) and the next step, pulled back toward 0.6, overshoots out of it again (p = 0.51)."""

    def forward(self, xs):
        p = xs[0].flatten(1).mean(dim=1)
        return [torch.stack([torch.zeros_like(p), 100 * (0.02 - (p - 0.6).abs())], 1)]


def test_deterministic_models_keep_the_iterate_that_fooled_them():
    x, y = [torch.full((4, 1, 2, 2), 0.51)], [torch.zeros(4, dtype=torch.long)]
    kw = dict(eps=0.2, steps=2, alpha=0.1, random_start=False)
    model = Overshoot()
    last = pgd(model, x, y, **kw)
    best = pgd(model, x, y, keep_best=True, **kw)
    with torch.no_grad():
        assert (model(last)[0].argmax(1) == 0).all()  # the last iterate has stepped back out of the band
        assert (model(best)[0].argmax(1) == 1).all()  # the one before it was inside
    res = run_suite(model, rows_from_tensors(x, y), ["bim"], [0.2], "joint",  # BIM: steps of eps / steps = 0.1
                    SuiteSettings(steps=2, restarts=1, batch_size=4, sanity=False))
    assert [(r["robust_acc"], r["iterate"]) for r in res.records] == [(0.0, "best")]


class Band(nn.Module):
    """One head (label 0) fooled inside 0.6 < p < 0.8, most confidently at p = 0.7: steps of 0.06 from p = 0.55
    reach 0.61 (fooled by a hair) and then 0.67 (fooled with a wide margin)."""

    def forward(self, xs):
        p = xs[0].flatten(1).mean(dim=1)
        return [torch.stack([torch.zeros_like(p), 100 * (0.1 - (p - 0.7).abs())], 1)]


def test_a_fooled_row_keeps_its_most_confidently_wrong_iterate():
    """Both iterates fool the model; the one that barely crosses the boundary could be un-fooled by float rounding
    when the suite scores it again in another batch, so the higher-loss one is kept."""
    x, y = [torch.full((3, 1, 2, 2), 0.55)], [torch.zeros(3, dtype=torch.long)]
    best = pgd(Band(), x, y, keep_best=True, eps=0.2, steps=2, alpha=0.06, random_start=False)
    p = best[0].flatten(1).mean(dim=1)
    assert torch.allclose(p, torch.full_like(p, 0.67), atol=1e-5)  # not the first fooling iterate, p = 0.61


def test_autoattack_rand_on_a_random_model_attacks_every_row():
    """The library returns the clean image for every row its own single draw did not see fooled; scored on a
    fresh draw that is the clean accuracy, not AutoAttack's. Here every counted row must come back perturbed."""
    eps = 8 / 255
    model = ShatteredLinear(eps)
    x = [torch.full((12, 1, 4, 4), 0.5)]
    y = [torch.zeros(12, dtype=torch.long)]
    masks = [torch.arange(12) < 9]
    small = eps / 2  # too small to fool this model at all (it needs 0.8 eps): the library returns every row clean
    for random_model, want in ((False, 0), (True, 9)):
        adv = autoattack(model, x, y, masks, small, task=0, steps=10, eot=8, random_model=random_model)
        moved = (adv[0] - x[0]).flatten(1).abs().amax(dim=1)
        assert int((moved[:9] > 0).sum()) == want and (moved[9:] == 0).all()  # uncounted rows stay clean
        assert moved.max() <= small + 1e-6
    rows = rows_from_tensors(x, y, masks)
    res = run_suite(model, rows, ["pgd", "autoattack"], [eps], "joint",
                    SuiteSettings(steps=10, restarts=1, eot=8, aa_steps=10, batch_size=12, sanity=False))
    acc = {r["attack"]: r["robust_acc"] for r in res.records}
    assert res.random_model and acc["autoattack"] <= acc["pgd"] + 0.34  # comparable strength, within noise (n=9)
    with pytest.raises(ConfigError, match="use --aa-version rand"):  # the library's own loop would keep clean rows
        autoattack(model, x, y, masks, small, task=0, version="standard", steps=10, random_model=True)
    with pytest.raises(ConfigError, match="use --aa-version rand"):  # refused before any attack of the suite runs
        run_suite(model, rows, ["pgd", "autoattack"], [eps], "joint",
                  SuiteSettings(steps=10, restarts=1, eot=8, aa_version="standard", batch_size=12, sanity=False))


def test_reference_protocol_attacks_every_row_at_every_budget():
    torch.manual_seed(0)
    model = TwoModalTwoHead().eval()
    xs, _ = two_modal_batch(n=16)
    with torch.no_grad():
        ys = [z.argmax(1) for z in model(xs)]
    ys[0][:4] = 1 - ys[0][:4]  # rows clean-wrong on both heads: the carried-over PGD skips them, the reference not
    ys[1][:4] = (ys[1][:4] + 1) % 4
    res = run_suite(model, rows_from_tensors(xs, ys), ["pgd", "reference"], [1 / 255, 4 / 255], "joint",
                    SuiteSettings(steps=3, restarts=1, batch_size=16, sanity=False))
    ref = [r for r in res.records if r["attack"] == "reference"]
    assert ref and all(r["attacked_rows"] == 16 for r in ref)
    assert any(r["attacked_rows"] < 16 for r in res.records if r["attack"] == "pgd")


class OneNetworkPerTask(nn.Module):
    """Like ``resnet18_single``: head k reads modality k only, so its loss has no gradient w.r.t. the others."""

    def forward(self, xs):
        # class 1 iff the image's mean exceeds 0.5: a budget of 0.5 flips every row whose mean is within 0.5 of it
        return [torch.stack([torch.zeros(len(x)), 10 * (x.flatten(1).mean(1) - 0.5)], 1) for x in xs]


def test_a_head_that_reads_one_modality_is_attacked_through_that_modality_only():
    torch.manual_seed(0)
    model = OneNetworkPerTask()
    x = [torch.rand(16, 1, 2, 2), torch.rand(16, 1, 2, 2)]
    with torch.no_grad():
        y = [o.argmax(1) for o in model(x)]  # every row clean-correct
    rows = rows_from_tensors(x, y)
    for threat in ("joint", "each"):
        res = run_suite(model, rows, ["pgd", "reference"], [0.5], threat,
                        SuiteSettings(steps=10, restarts=1, batch_size=16, sanity=False))
        by = {(r["attack"], r["task"], r.get("perturbed", "all")): r["robust_acc"] for r in res.records}
        # a large budget on the modality a head reads fools it; the other modality cannot touch it
        assert by[("pgd", "task0", "all" if threat == "joint" else "modality0")] == 0.0
        assert by[("reference", "task1", "all" if threat == "joint" else "modality1")] == 0.0
        if threat == "each":
            assert by[("pgd", "task0", "modality1")] == 1.0 and by[("pgd", "task1", "modality0")] == 1.0
    adv = pgd(model, x, y, eps=0.5, steps=5, alpha=0.2, task=0, random_start=False)
    assert torch.equal(adv[1], x[1]) and not torch.equal(adv[0], x[0])
