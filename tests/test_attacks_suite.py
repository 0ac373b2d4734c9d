"""AutoAttack view, the suite, sanity checks, subsets, reports, adversarial training, budgets and the CLI."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from attack_helpers import ShatteredLinear, TwoModalTwoHead, interrupt_on_call, train_tiny_run, two_modal_batch
from mailnet.attacks.adapters import SingleInput
from mailnet.attacks.adv_train import adversarial_batch, make_adversary
from mailnet.attacks.autoattack import FlatView, autoattack
from mailnet.attacks.eps import parse_eps, parse_eps_list
from mailnet.attacks.report import (attack_settings, near_chance_notes, records_csv, text_table,
                                    write_results)
from mailnet.attacks.sanity import failures, run_sanity
from mailnet.attacks.subset import rows_from_tensors, select_subset, stack_batches, subset_ids
from mailnet.attacks.suite import (LARGE_EPS_ALPHA_RATIO, LARGE_EPS_STEPS, SuiteSettings, _balanced_counted,
                                   run_suite)
from mailnet.config import DEFAULTS
from mailnet.errors import ConfigError


@pytest.fixture()
def toy():
    torch.manual_seed(0)
    model = TwoModalTwoHead().eval()
    xs, _ = two_modal_batch(n=16)
    with torch.no_grad():
        ys = [z.argmax(1) for z in model(xs)]  # every row right: accuracies can only fall
    return model, xs, ys


# --- budgets -----------------------------------------------------------------------------------------------------
def test_parse_eps_forms():
    assert parse_eps("4/255") == pytest.approx(4 / 255)
    assert parse_eps("0.0157") == pytest.approx(0.0157)
    assert parse_eps("4") == pytest.approx(4 / 255)  # >= 1 can only mean /255
    assert parse_eps("0.5", unit_255=True) == pytest.approx(0.5 / 255)
    assert parse_eps_list("1,2, 4,8") == pytest.approx([1 / 255, 2 / 255, 4 / 255, 8 / 255])
    assert parse_eps_list("8/255,16") == pytest.approx([8 / 255, 16 / 255])
    for bad in ("abc", "1/0", "300", "-1"):
        with pytest.raises(ConfigError, match="eps"):
            parse_eps(bad)


# --- AutoAttack --------------------------------------------------------------------------------------------------
def test_flat_view_round_trips_two_modalities(toy):
    model, xs, _ = toy
    view = FlatView(model, xs, [2 / 255, 8 / 255], task=1)
    flat = view.encode()
    assert flat.shape == (16, 64 + 108 + view.n_bits, 1, 1) and flat.min() >= 0 and flat.max() <= 1
    back = view.decode(flat)
    for a, b in zip(back, xs):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-6)
    # a library step of eps_ref on every coordinate is eps_m in modality m's pixels; rows survive subsetting
    moved = view.decode((flat + 2 / 255)[[3, 7]])
    assert torch.allclose((moved[1] - xs[1][[3, 7]]).clamp(max=8 / 255), torch.full_like(moved[1], 8 / 255).clamp(
        max=(1 - xs[1][[3, 7]])), atol=1e-5)
    assert (moved[0] - xs[0][[3, 7]]).abs().max() <= 2 / 255 + 1e-6
    assert view(flat[[5]]).shape == (1, 4) and FlatView(model, xs, [1 / 255, 1 / 255], 0)(flat[:2]).shape == (2, 4)


def test_flat_view_lets_a_scaled_pixel_pushed_past_one_come_back():
    """With per-modality budgets, modality m is stored at r_m = eps_ref / eps_m < 1 in the library's [0, 1] tensor,
    so a library step can put it past r_m, i.e. a pixel above 1. It must read as 1 and still get the gradient (a
    plain clamp gives it none, so the attack could never move it back down)."""
    model = TwoModalTwoHead()
    xs = [torch.full((2, 1, 8, 8), 0.5), torch.ones(2, 3, 6, 6)]
    view = FlatView(model, xs, [2 / 255, 8 / 255], task=0)
    flat = (view.encode() + torch.cat([torch.zeros(2, 64), torch.full((2, 108), 2 / 255),
                                       torch.zeros(2, view.n_bits)], 1)[:, :, None, None]).requires_grad_()
    images = view.decode(flat)
    assert torch.equal(images[1], torch.ones_like(images[1]))  # 1 + 8/255 reads as 1
    images[1].sum().backward()
    assert torch.allclose(flat.grad[:, 64:172].flatten(), torch.full((216,), 4.0))  # d pixel / d stored = 1 / r


def test_autoattack_rand_respects_budgets_masks_and_frozen_modalities(toy):
    model, xs, ys = toy
    masks = [torch.arange(16) < 10, torch.ones(16, dtype=torch.bool)]
    adv = autoattack(model, xs, ys, masks, [4 / 255, 0.0], task=0, version="rand", steps=5, eot=1)
    assert torch.equal(adv[1], xs[1])  # modality with budget 0 untouched
    assert torch.equal(adv[0][10:], xs[0][10:])  # rows not counted for task 0 untouched
    assert (adv[0] - xs[0]).abs().max() <= 4 / 255 + 1e-6
    adv = autoattack(model, xs, ys, None, 64 / 255, task=1, version="rand", steps=5, eot=1)
    assert [a.shape for a in adv] == [x.shape for x in xs]
    with torch.no_grad():
        assert (model(adv)[1].argmax(1) == ys[1]).float().mean() < 1.0
    with pytest.raises(ConfigError, match="0.5"):
        autoattack(model, xs, ys, None, 0.6, task=0)
    with pytest.raises(ConfigError, match="2 heads .*pass task=0..1"):  # no summed AutoAttack to fall back on
        autoattack(model, xs, ys, None, 4 / 255)
    with pytest.raises(ConfigError, match="task=2 is not a head"):
        autoattack(model, xs, ys, None, 4 / 255, task=2)


def test_autoattack_needs_no_task_on_a_one_head_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3))
    model = SingleInput(net).eval()  # a torchvision-style classifier: one input, one head
    x, y = torch.rand(8, 3, 4, 4), torch.randint(0, 3, (8,))
    adv = autoattack(model, [x], [y], None, 16 / 255, version="rand", steps=5, eot=1)
    assert len(adv) == 1 and 0 < (adv[0] - x).abs().max() <= 16 / 255 + 1e-6


def test_autoattack_leaves_the_model_in_eval_mode_when_the_library_returns(monkeypatch):
    """torchattacks puts back the mode its model had when called; the wrapper's view must not say 'train'."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3))
    model = SingleInput(net).eval()
    modes = []
    decode = FlatView.decode

    def spy(view, flat):
        modes.append(view.model.training)
        return decode(view, flat)

    monkeypatch.setattr(FlatView, "decode", spy)
    autoattack(model, [torch.rand(8, 3, 4, 4)], [torch.randint(0, 3, (8,))], None, 16 / 255, version="rand", steps=3,
               eot=1)
    assert modes and not any(modes)  # the decode after the library's return runs with the model in eval mode


# --- suite and sanity --------------------------------------------------------------------------------------------
def test_suite_joint_and_each_with_masks(toy):
    model, xs, ys = toy
    masks = [torch.ones(16, dtype=torch.bool), torch.arange(16) % 2 == 0]
    wrong = ys[1].clone()
    wrong[1::2] = (wrong[1::2] + 1) % 4  # rows not counted for task 1 are wrong: must not lower its accuracy
    rows = rows_from_tensors(xs, [ys[0], wrong], masks)
    settings = SuiteSettings(steps=3, restarts=1, eot=4, aa_steps=3, batch_size=6, sanity=True)
    res = run_suite(model, rows, ["pgd", "reference", "autoattack"], [2 / 255, 8 / 255], ["joint", "each"], settings,
                    task_names=["bin", "multi"], modality_names=["gray", "rgb"])
    assert not res.random_model
    assert [c["clean_acc"] for c in res.clean] == [1.0, 1.0] and [c["n"] for c in res.clean] == [16, 8]
    main = [r for r in res.records if r["role"] == "main"]
    assert len(main) == 3 * 2 * 3 * 2  # variants x attacks x eps x tasks
    assert {r["perturbed"] for r in main} == {"all", "gray", "rgb"}
    assert all(r["eot"] == 1 for r in res.records)  # deterministic model: no EOT
    for r in main:
        assert 0.0 <= r["robust_acc"] <= r["clean_acc"]
        if r["perturbed"] == "gray":
            assert r["eps_per_modality"] == [r["eps"], 0.0]
    probes = [r for r in res.records if r["role"] == "probe"]
    assert {r["eps_255"] for r in probes} >= {64.0}
    large = [r for r in probes if r["eps_255"] == 64.0]
    # the large-budget probe runs its own schedule (20 steps of eps/16), not the suite's 3 steps, and says so
    assert all(r["steps"] == LARGE_EPS_STEPS == 20 and r["alpha_ratio"] == LARGE_EPS_ALPHA_RATIO for r in large)
    csv_text = records_csv(res.records)
    assert csv_text.splitlines()[0].startswith("attack,role,threat,perturbed,task")
    assert len(csv_text.splitlines()) == len(res.records) + 1


def test_interrupted_suite_keeps_the_budgets_that_finished_only_when_allowed(toy, monkeypatch):
    import mailnet.attacks.suite as suite

    model, xs, ys = toy
    rows = rows_from_tensors(xs, ys, [torch.ones(16, dtype=torch.bool)] * 2)
    interrupted_on_third = interrupt_on_call(suite.attack_correctness, 3)
    monkeypatch.setattr(suite, "attack_correctness", interrupted_on_third)
    settings = SuiteSettings(steps=2, restarts=1, batch_size=16)
    res = run_suite(model, rows, ["pgd"], [1 / 255, 2 / 255, 4 / 255], "joint", settings, allow_partial=True)
    assert res.interrupted and [r["eps_255"] for r in res.records] == [1.0, 1.0, 2.0, 2.0]
    interrupted_on_third.calls.clear()
    with pytest.raises(KeyboardInterrupt):  # the default (mailnet bench): an interrupt is not a result
        run_suite(model, rows, ["pgd"], [1 / 255, 2 / 255, 4 / 255], "joint", settings)


def _numbers(records: list[dict]) -> list[dict]:
    """Attack records without their timings: what a resumed run must reproduce."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


class NoisyTwoModalTwoHead(TwoModalTwoHead):
    """A random model whose randomness comes from torch's global generator (as MC dropout's does)."""

    def forward(self, xs):
        return [z + 0.3 * torch.randn_like(z) for z in super().forward(xs)]


@pytest.mark.parametrize("random_model", [True, False])
def test_a_resumed_suite_gives_the_numbers_of_an_uninterrupted_one(toy, random_model):
    """Every unit (attack x budget x probe) is seeded on its own, so the units an earlier, interrupted run
    finished are kept and the rest come out as in one uninterrupted run; a link of a carried-over chain
    (deterministic models) is kept with the rows it left robust, which the next budget starts from (links stored
    without them, by an earlier mailnet, are run again)."""
    model, xs, ys = toy
    if random_model:
        noisy = NoisyTwoModalTwoHead().eval()
        noisy.load_state_dict(model.state_dict())
        model = noisy
    rows = rows_from_tensors(xs, ys)
    settings = SuiteSettings(steps=3, restarts=1, eot=2, batch_size=16, seed=3)
    args = (model, rows, ["pgd", "reference"], [2 / 255, 8 / 255], "joint", settings)
    full = run_suite(*args)
    assert full.random_model is random_model

    progress: list[list[dict]] = []

    def stop_after_three(records: list[dict]) -> None:
        progress.append(records)
        if len(progress) == 3:
            raise KeyboardInterrupt

    cut = run_suite(*args, allow_partial=True, on_unit=stop_after_three)
    assert cut.interrupted and len(progress[-1]) == 3 * 2  # 3 units x 2 tasks: pgd at 2 and 8, reference at 2
    logs: list[str] = []
    resumed = run_suite(*args, done=progress[-1], log=logs.append)

    assert _numbers(resumed.records) == _numbers(full.records)
    assert len([line for line in logs if "kept" in line]) == 3
    assert all(r["unit"].startswith(("pgd|", "reference|")) for r in full.records)
    assert all(("rows_correct" in r) == (not random_model and r["attack"] == "pgd" and r["role"] == "main")
               for r in full.records)
    older = [{k: v for k, v in r.items() if k != "rows_correct"} for r in progress[-1]]
    logs.clear()
    again = run_suite(*args, done=older, log=logs.append)
    assert _numbers(again.records) == _numbers(full.records)
    assert len([line for line in logs if "kept" in line]) == (3 if random_model else 1)  # the pgd chain ran again
    # units stored by a mailnet before balanced accuracy: the clean one is filled in from this sitting's clean
    # pass, the robust one where the unit stored each row's correctness (a chain's link), else left out, not guessed
    unbalanced = [{k: v for k, v in r.items() if not k.endswith("_bal_acc")} for r in progress[-1]]
    mixed = run_suite(*args, done=unbalanced)
    assert [r["clean_bal_acc"] for r in mixed.records] == [r["clean_bal_acc"] for r in full.records]
    for got, want in zip(mixed.records, full.records):
        kept = want["unit"] in {r["unit"] for r in unbalanced}
        has_rows = "rows_correct" in want
        assert got.get("robust_bal_acc") == (want["robust_bal_acc"] if has_rows or not kept else None), got["unit"]


def test_carry_over_attacks_only_robust_rows_and_equals_worst_case(toy):
    model, xs, ys = toy
    wrong = ys[0].clone()
    wrong[:5] = 1 - wrong[:5]  # 5 rows clean-wrong on task 0 (and right on task 1)
    wrong1 = ys[1].clone()
    wrong1[:3] = (wrong1[:3] + 1) % 4  # rows 0-2 wrong on both tasks: never worth attacking
    rows = rows_from_tensors(xs, [wrong, wrong1])
    eps = [8 / 255, 1 / 255, 3 / 255]  # given out of order: budgets run in increasing order
    base = dict(steps=5, restarts=1, batch_size=7, sanity=False)
    cut = run_suite(model, rows, ["pgd"], eps, "joint", SuiteSettings(**base))
    full = run_suite(model, rows, ["pgd"], eps, "joint", SuiteSettings(**base, carry_over=False))
    get = lambda res, t: {r["eps"]: r for r in res.records if r["task"] == f"task{t}"}  # noqa: E731
    for t in range(2):
        c, f = get(cut, t), get(full, t)
        accs = [c[e]["robust_acc"] for e in sorted(eps)]
        assert accs == sorted(accs, reverse=True) and accs[0] <= cut.clean[t]["clean_acc"]
        for e in eps:  # the worst case over budgets <= eps can only be lower than one attack at eps
            assert c[e]["robust_acc"] <= f[e]["robust_acc"] + 1e-9
    attacked = [get(cut, 0)[e]["attacked_rows"] for e in sorted(eps)]
    assert attacked[0] == 13 and attacked == sorted(attacked, reverse=True)  # rows 0-2 skipped from the start
    assert all(get(full, 0)[e]["attacked_rows"] == 16 for e in eps)


def test_suite_uses_eot_for_random_models():
    eps = 8 / 255
    model = ShatteredLinear(eps)
    rows = rows_from_tensors([torch.full((60, 1, 4, 4), 0.5)], [torch.zeros(60, dtype=torch.long)])
    res = run_suite(model, rows, ["pgd"], [eps], "joint",
                    SuiteSettings(steps=10, restarts=1, eot=30, batch_size=60))
    assert res.random_model
    main = [r for r in res.records if r["role"] == "main"][0]
    no_eot = [r for r in res.records if r["role"] == "probe" and r["eot"] == 1][0]
    assert main["eot"] == 30 and main["robust_acc"] < no_eot["robust_acc"] - 0.3
    assert not [c for c in failures(run_sanity(res.records)) if c.name.startswith("EOT")]


class SmoothLinear(nn.Module):
    """ShatteredLinear without its misleading sine: the deterministic model a transfer attack can follow."""

    def __init__(self, eps: float):
        super().__init__()
        self.inner = ShatteredLinear(eps)

    def forward(self, xs):
        m = self.inner.k * (xs[0] - self.inner.x0).flatten(1).mean(dim=1) - self.inner.tau
        return [torch.stack([torch.zeros_like(m), m], dim=1)]


def test_transfer_attack_exposes_masked_gradients():
    eps = 8 / 255
    rows = rows_from_tensors([torch.full((60, 1, 4, 4), 0.5)], [torch.zeros(60, dtype=torch.long)])
    base = dict(steps=10, restarts=1, batch_size=60, sanity=False, transfer_source="smooth twin")
    # without EOT the white-box attack is misled; the transfer from a smooth twin is not: the check says so
    res = run_suite(ShatteredLinear(eps), rows, ["pgd", "transfer"], [eps], "joint", SuiteSettings(eot=1, **base),
                    source=SmoothLinear(eps))
    acc = {r["attack"]: r["robust_acc"] for r in res.records}
    assert acc["transfer"] <= 0.05 and acc["pgd"] >= 0.3
    checks = [c for c in run_sanity(res.records) if c.name == "white-box <= transfer"]
    assert checks and not checks[0].passed and "smooth twin" in checks[0].detail
    # an honest target (its gradients are informative) beats the transfer from a misleading source: check passes
    res = run_suite(SmoothLinear(eps), rows, ["pgd", "transfer"], [eps], "joint", SuiteSettings(eot=1, **base),
                    source=ShatteredLinear(eps))
    acc = {r["attack"]: r["robust_acc"] for r in res.records}
    assert acc["pgd"] <= 0.05 and acc["transfer"] >= 0.3
    checks = [c for c in run_sanity(res.records) if c.name == "white-box <= transfer"]
    assert checks and all(c.passed for c in checks)



class NoisyLinear(nn.Module):
    """A random model: SmoothLinear's margin plus fresh Gaussian noise on every pass. Fooling it on most draws needs
    the whole budget, not an iterate that just crosses the noise-free boundary."""

    def __init__(self, eps: float, noise: float = 1.0):
        super().__init__()
        self.smooth, self.noise = SmoothLinear(eps), noise
        self.gen = torch.Generator().manual_seed(1)

    def forward(self, xs):
        (logits,) = self.smooth([xs[0] * 4 - 1.5])  # steeper: the full budget moves the margin by 4 units
        return [logits + torch.stack([torch.zeros(len(logits)), self.noise * torch.randn(len(logits), generator=self.gen)], 1)]


def test_transfer_attack_returns_its_strongest_iterate_not_the_first_that_fools_the_source():
    """The transfer attack's source is deterministic, but what counts is the target: keeping the first iterate that
    fools the source hands over a perturbation that barely crosses its boundary, and a random target's noise undoes
    it on many draws (overstating robustness); the last iterate uses the whole budget."""
    eps = 8 / 255
    target = NoisyLinear(eps)
    rows = rows_from_tensors([torch.full((200, 1, 4, 4), 0.5)], [torch.zeros(200, dtype=torch.long)])
    settings = SuiteSettings(steps=10, restarts=1, eot=1, batch_size=200, sanity=False, eval_draws=8,
                             transfer_source="noise-free twin")
    res = run_suite(target, rows, ["transfer"], [eps], "joint", settings, source=SmoothLinear(eps / 4))
    (rec,) = [r for r in res.records if r["attack"] == "transfer"]
    assert rec["iterate"] == "last" and rec["robust_acc"] <= 0.1, rec

def test_frozen_draw_is_deterministic_and_leaves_the_model_random():
    from mailnet.attacks.transfer import FrozenDraw
    from mailnet.models import create_model

    torch.manual_seed(0)
    model = create_model("robust_mail", in_chans=[1, 1], num_classes=[2, 2], widths=[8, 8, 16, 16], stem="cifar")
    model.eval()
    xs = [torch.rand(3, 1, 28, 28), torch.rand(3, 1, 28, 28)]
    frozen = FrozenDraw(model, seed=7)
    with torch.no_grad():
        a, b = frozen(xs), frozen(xs)
        assert all(torch.equal(u, v) for u, v in zip(a, b))
        model.seed_noise(3)
        replay = model(xs)
        model.seed_noise(3)
        frozen(xs)  # must not consume or replace the model's own generator
        after = model(xs)
        assert all(torch.equal(u, v) for u, v in zip(replay, after))
        assert not all(torch.equal(u, v) for u, v in zip(model(xs), model(xs)))


def _rec(**kw):
    base = {"attack": "pgd", "role": "main", "threat": "joint", "perturbed": "all", "eps": 4 / 255, "eps_255": 4.0,
            "task": "t", "n": 200, "clean_acc": 0.9, "robust_acc": 0.5, "steps": 50, "restarts": 2, "eot": 20,
            "loss": "ce"}
    base.update(kw)
    return base


class _SameSize(nn.Module):
    """Two modalities of one height and width (1 and 3 channels), two heads."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(3, 4, 3, padding=1)])
        self.heads = nn.ModuleList([nn.Linear(8, 2), nn.Linear(8, 3)])

    def forward(self, xs):
        f = torch.cat([c(x).relu().mean(dim=(2, 3)) for c, x in zip(self.convs, xs)], dim=1)
        return [h(f) for h in self.heads]


def test_flat_view_keeps_the_image_layout_when_modalities_share_height_and_width():
    """Square (AutoAttack standard) perturbs square windows: on the flat (N, D, 1, 1) layout its window would be the
    whole input. Same-sized modalities are stacked along the channels instead, row bits as constant channels."""
    torch.manual_seed(0)
    model = _SameSize().eval()
    xs = [torch.rand(10, 1, 8, 8), torch.rand(10, 3, 8, 8)]
    view = FlatView(model, xs, [2 / 255, 8 / 255], task=1)
    packed = view.encode()
    assert view.image and packed.shape == (10, 1 + 3 + view.n_bits, 8, 8)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(view.decode(packed), xs))
    moved = view.decode((packed + 2 / 255)[[4, 9]])  # a library step of eps_ref is eps_m in modality m's pixels
    assert torch.allclose(moved[0], (xs[0][[4, 9]] + 2 / 255).clamp(max=1), atol=1e-6)
    assert torch.allclose(moved[1], (xs[1][[4, 9]] + 8 / 255).clamp(max=1), atol=1e-5)
    with torch.no_grad():
        ys = [z.argmax(1) for z in model(xs)]
    adv = autoattack(model, xs, ys, eps=[2 / 255, 8 / 255], task=1, version="standard", steps=3)
    for a, x, e in zip(adv, xs, (2 / 255, 8 / 255)):
        assert a.shape == x.shape and (a - x).abs().max() <= e + 1e-6 and a.min() >= 0 and a.max() <= 1

def test_sanity_checks_flag_broken_tables():
    good = [_rec(), _rec(eps=8 / 255, eps_255=8.0, robust_acc=0.3), _rec(role="probe", steps=10, robust_acc=0.55),
            _rec(role="probe", eot=1, robust_acc=0.6), _rec(attack="autoattack", robust_acc=0.48),
            _rec(role="probe", eps=64 / 255, eps_255=64.0, steps=20, restarts=1, robust_acc=0.0)]
    assert failures(run_sanity(good)) == []
    cases = {
        "more PGD steps never help the model": _rec(role="probe", steps=10, robust_acc=0.30),
        "EOT <= no-EOT (random model)": _rec(role="probe", eot=1, robust_acc=0.30),
        "AutoAttack <= PGD": _rec(attack="autoattack", robust_acc=0.70),
        "accuracy ~0 at large eps": _rec(role="probe", eps=64 / 255, eps_255=64.0, steps=20, robust_acc=0.40),
        "accuracy does not grow with eps": _rec(eps=16 / 255, eps_255=16.0, robust_acc=0.8),
        "white-box <= transfer": _rec(attack="transfer", source="resnet18_late_fusion", robust_acc=0.2),
        "robust <= clean": _rec(robust_acc=0.99),
    }
    for name, bad in cases.items():
        table = [r for r in good if not (r["role"] == bad["role"] and r["attack"] == bad["attack"]
                                         and r["steps"] == bad["steps"] and r["eot"] == bad["eot"]
                                         and r["eps_255"] == bad["eps_255"])] + [bad]
        failed = failures(run_sanity(table))
        assert any(c.name == name for c in failed), (name, failed)
    # within noise is not a failure: 2 rows out of 200
    assert failures(run_sanity(good[:2] + [_rec(role="probe", steps=10, robust_acc=0.49)])) == []



def test_sanity_checks_skip_comparisons_that_cannot_fail_or_compare_unlike_runs():
    # a carried-over chain is monotone in eps by construction: no check (it would only pad the count passed)
    chain = [_rec(carried=True), _rec(eps=8 / 255, eps_255=8.0, robust_acc=0.3, carried=True)]
    assert not [c for c in run_sanity(chain) if c.name == "accuracy does not grow with eps"]
    free = [_rec(), _rec(eps=8 / 255, eps_255=8.0, robust_acc=0.3)]
    assert [c.passed for c in run_sanity(free) if c.name == "accuracy does not grow with eps"] == [True]
    # fewer steps with fewer restarts (or rows not carried over) is not the comparison "more steps" is about
    unlike = [_rec(robust_acc=0.2), _rec(role="probe", steps=10, restarts=1, robust_acc=0.6)]
    assert not [c for c in run_sanity(unlike) if c.name == "more PGD steps never help the model"]
    like = [_rec(robust_acc=0.2), _rec(role="probe", steps=10, robust_acc=0.6)]
    assert [c.passed for c in run_sanity(like) if c.name == "more PGD steps never help the model"] == [True]


def test_probes_match_the_main_pgd_and_ignore_the_eps_ratio(toy):
    """The fewer-steps probe differs from the main PGD in its steps only (same restarts, and on a deterministic
    model the same rows the chain had left robust before that budget); the large-budget probe perturbs every
    modality by 64/255 whatever eps_ratio (a ratio of 8 would have asked for a budget above 1 and crashed after
    every main attack had run)."""
    model, xs, ys = toy
    rows = rows_from_tensors(xs, ys, [torch.ones(16, dtype=torch.bool)] * 2)
    settings = SuiteSettings(steps=5, restarts=2, batch_size=16, eps_ratio=[1.0, 8.0])
    res = run_suite(model, rows, ["pgd"], [1 / 255, 4 / 255], "joint", settings)
    main = {(r["eps_255"], r["task"]): r for r in res.records if r["role"] == "main"}
    probes = [r for r in res.records if r["role"] == "probe"]
    large = [r for r in probes if r["eps_255"] == 64.0]
    assert large and all(r["eps_per_modality"] == pytest.approx([64 / 255, 64 / 255]) for r in large)
    fewer = [r for r in probes if r["steps"] == 1]
    assert {r["eps_255"] for r in fewer} == {4.0}
    for r in fewer:
        m = main[(4.0, r["task"])]
        assert (r["restarts"], r["carried"], r["attacked_rows"]) == (m["restarts"], m["carried"], m["attacked_rows"])
        assert r["robust_acc"] <= main[(1.0, r["task"])]["robust_acc"]  # started from the rows 1/255 left robust
    assert all(r["carried"] for r in res.records if r["attack"] == "pgd" and r["eps_255"] != 64.0)

# --- subsets and reports -----------------------------------------------------------------------------------------
def _batches():
    for start in (0, 5):
        n = 5
        idx = torch.arange(start, start + n)
        yield {"images": [torch.rand(n, 1, 4, 4)], "labels": [idx % 2, idx % 3],
               "mask": [torch.ones(n, dtype=torch.bool), idx < 4], "index": [idx, idx % 4]}


def test_subset_is_per_task_seeded_and_order_free():
    rows = stack_batches(_batches())
    assert len(rows) == 10 and rows.counted() == [10, 4]
    sub = select_subset(rows, 3, seed=0)
    assert sub.counted() == [3, 3]
    assert subset_ids(sub) == subset_ids(select_subset(rows, 3, seed=0))
    flipped = rows.take(torch.arange(9, -1, -1))  # the same samples visited in another order
    assert sorted(subset_ids(select_subset(flipped, 3, seed=0))[0]) == sorted(subset_ids(sub)[0])
    assert select_subset(rows, 0).counted() == [10, 4]


def test_write_results_makes_csv_json_png(tmp_path):
    recs = [_rec(), _rec(eps=8 / 255, eps_255=8.0, robust_acc=0.2), _rec(attack="reference", robust_acc=0.7)]
    paths = write_results(tmp_path, "attack_test", {"records": recs}, recs, [{"task": "t", "n": 200, "clean_acc": 0.9}])
    assert json.loads(paths["json"].read_text())["records"][0]["attack"] == "pgd"
    assert paths["png"].read_bytes()[:4] == b"\x89PNG" and paths["csv"].read_text().count("\n") == 4


class _ConstantAnswer(nn.Module):
    """Answers class 0 on head 0 and class 2 on head 1 whatever the images (the logits still depend on them, by
    a tiny amount, so attacks have a gradient): the degenerate model whose accuracy is the class balance."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(1e-3))

    def forward(self, xs):
        s = self.w * sum(x.flatten(1).mean(1) for x in xs)[:, None]
        return [torch.tensor([5.0, 0.0]) + s, torch.tensor([0.0, 0.0, 5.0, 0.0]) + s]


def test_balanced_accuracy_tells_a_constant_answer_from_robustness(toy):
    """Robust accuracy of a model that answers one class everywhere equals the majority class's share, whatever
    the attack; its balanced accuracy (mean per-class accuracy) stays at 1/k, and the report says both."""
    xs, _ = two_modal_batch(n=16)
    ys = [torch.tensor([0] * 12 + [1] * 4), torch.arange(16) % 4]
    settings = SuiteSettings(steps=2, restarts=1, sanity=False)
    res = run_suite(_ConstantAnswer().eval(), rows_from_tensors(xs, ys), ["pgd"], [8 / 255], settings=settings,
                    task_names=["binary", "four"])
    assert res.clean[0] == {"task": "binary", "n": 16, "clean_acc": 0.75, "clean_bal_acc": 0.5, "classes": 2,
                            "majority_acc": 0.75}
    assert res.clean[1]["clean_acc"] == 0.25 and res.clean[1]["clean_bal_acc"] == 0.25
    binary, four = res.records
    assert binary["robust_acc"] == 0.75 and binary["robust_bal_acc"] == 0.5 and four["robust_bal_acc"] == 0.25
    text = text_table(res.records, res.clean)
    assert "(balanced accuracy: mean per-class accuracy)" in text
    assert "majority class everywhere scores accuracy binary 0.7500 (2 classes), four 0.2500 (4 classes)" in text
    assert "NOTE: binary: clean balanced accuracy 0.5000, chance 0.5000: this head answers (almost) one class" in text
    assert "NOTE: four: clean balanced accuracy 0.2500, chance 0.2500" in text
    assert records_csv(res.records).splitlines()[0].endswith(",clean_bal_acc,robust_bal_acc")

    # balanced accuracy is the mean of each class's share of rows left correct (labels of two classes per head,
    # some rows wrong from the start)
    model, xs, ys = toy
    ys = [ys[0].clone(), ys[1].clone()]
    ys[0][:5], ys[1][:3] = 1 - ys[0][:5], (ys[1][:3] + 1) % 4
    res = run_suite(model, rows_from_tensors(xs, ys), ["pgd"], [8 / 255], settings=settings)
    for t, r in enumerate(res.records):
        assert len(torch.unique(ys[t])) == 2
        kept = torch.tensor(r["rows_correct"])  # each row's correctness after the attack (the carried chain's link)
        per_class = [float(kept[ys[t] == k].mean()) for k in torch.unique(ys[t])]
        assert r["robust_bal_acc"] == pytest.approx(sum(per_class) / len(per_class))
    # the note flags heads near chance only: not one that discriminates, nor a task with one class present
    row = {"task": "t", "classes": 2, "majority_acc": 0.6}
    assert near_chance_notes([{**row, "clean_bal_acc": 0.80}, {**row, "clean_bal_acc": 0.70, "classes": 1}]) == []
    assert len(near_chance_notes([{**row, "clean_bal_acc": 0.54}])) == 1
    multi = rows_from_tensors(xs, [ys[0], torch.randint(0, 2, (16, 3)).float()])
    assert _balanced_counted([torch.ones(16), torch.ones(16)], multi) == [1.0, None]  # multi-label: not defined


def test_the_plot_title_names_what_each_attack_ran_with(toy):
    """The reference protocol runs its own 10 steps whatever --steps says, and AutoAttack counts iterations: the
    title and notes read each attack's settings from its records, not from the command's options."""
    model, xs, ys = toy
    res = run_suite(model, rows_from_tensors(xs, ys), ["reference", "pgd"], [2 / 255, 8 / 255],
                    settings=SuiteSettings(steps=3, restarts=2, sanity=False))
    assert attack_settings(res.records) == "reference: 10 steps, EOT 1; pgd: 3 steps x2 restarts, EOT 1"
    fake = [{"attack": "autoattack", "role": "main", "steps": 20, "restarts": 1, "eot": 10},
            {"attack": "pgd", "role": "probe", "steps": 20, "restarts": 1, "eot": 10}]  # probes are not the table
    assert attack_settings(fake) == "autoattack: 20 iterations, EOT 10"


# --- adversarial training ----------------------------------------------------------------------------------------
def test_adversarial_batch_in_train_mode(toy):
    model, xs, ys = toy
    model.train()
    bn = model.a[1]
    before = (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))
    for method in ("pgd", "fgsm-rs"):
        adv = adversarial_batch(model, xs, ys, None, method=method, eps=4 / 255, steps=3)
        for a, x in zip(adv, xs):
            assert a.shape == x.shape and not a.requires_grad
            assert (a - x).abs().max() <= 4 / 255 + 1e-6 and a.min() >= 0 and a.max() <= 1
            assert not torch.equal(a, x)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert int(bn.num_batches_tracked) == before[2]
    assert all(p.grad is None for p in model.parameters())
    adversary = make_adversary({"method": "pgd", "eps": "8/255", "steps": 2, "alpha": None})
    adv = adversary(model, xs, ys, [torch.ones(16, dtype=torch.bool)] * 2)
    assert (adv[1] - xs[1]).abs().max() <= 8 / 255 + 1e-6
    with pytest.raises(ConfigError, match="method"):
        make_adversary({"method": "cw"})
    with pytest.raises(ConfigError, match=r"train.adv.steps: expected an integer >= 1, got 0"):
        make_adversary({"method": "pgd", "steps": 0})  # not silently the default
    assert make_adversary({"method": "pgd"}).settings["steps"] == DEFAULTS["train"]["adv"]["steps"]


# --- the command -------------------------------------------------------------------------------------------------
def test_attack_command_on_a_tiny_run(tmp_path, data_root, capsys):
    from mailnet.cli import main

    run = train_tiny_run(tmp_path, data_root, "robust_mail", n_test=24)
    capsys.readouterr()
    out = tmp_path / "atk"
    assert main(["attack", str(run), "--attack", "pgd,reference,transfer", "--eps", "2,8", "--steps", "2",
                 "--restarts", "1", "--eot", "2", "--subset", "6", "--data-root", str(data_root), "--device", "cpu",
                 "--out", str(out), "--transfer-from", str(run)]) == 0
    text = capsys.readouterr()
    result = json.loads((out / "attack_test.json").read_text())
    assert result["random_model"] is True and result["settings"]["eot_used"] == 2
    assert result["settings"]["fast_modules"] is True
    assert result["eps_255"] == [2.0, 8.0] and set(result["subset_indices"]) == {"pneumonia", "breast"}
    assert all(len(v) == 6 for v in result["subset_indices"].values())
    assert {r["attack"] for r in result["records"]} == {"pgd", "reference", "transfer"}
    assert {r["source"] for r in result["records"] if r["attack"] == "transfer"} == {str(run)}
    assert any(c["name"] == "white-box <= transfer" for c in result["sanity"]["checks"])
    assert "checks" in result["sanity"] and (out / "attack_test.png").is_file()
    assert ("WARNING" in text.err) == (not result["sanity"]["passed"])
    assert "pgd main eps=8/255 all" in text.err  # the progress bar over the chunks (no --quiet)
    # a random model with the probes on: the gradient-agreement probe ran first, per task, with --eot draws
    assert [(a["task"], a["n"], a["draws"]) for a in result["gradient_agreement"]] == [("pneumonia", 6, 2),
                                                                                     ("breast", 6, 2)]
    assert "EOT gradient agreement (two independent 2-draw means" in text.out
    assert sum(c["name"] == "EOT gradient estimates agree beyond chance" for c in result["sanity"]["checks"]) == 2
    # the transfer attack from the target at its random variables' expected values
    from mailnet.attacks.transfer import EXPECTED_DRAW

    assert main(["attack", str(run), "--attack", "transfer", "--transfer-surrogate", "expectation", "--eps", "8",
                 "--steps", "2", "--restarts", "1", "--subset", "6", "--quiet", "--no-sanity", "--data-root",
                 str(data_root), "--device", "cpu", "--out", str(tmp_path / "expected")]) == 0
    expected = json.loads((tmp_path / "expected" / "attack_test.json").read_text())
    assert {r["source"] for r in expected["records"]} == {EXPECTED_DRAW} and expected["gradient_agreement"] == []
    capsys.readouterr()
    # SIGTERM (timeout, a scheduler) in the middle: the budgets that finished are written, marked, exit 130
    import os
    import signal

    import mailnet.attacks.suite as suite

    real, calls = suite.attack_correctness, []

    def terminated_on_second_budget(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    suite.attack_correctness = terminated_on_second_budget
    try:
        assert main(["attack", str(run), "--attack", "reference", "--eps", "2,8", "--subset", "6", "--quiet",
                     "--no-sanity", "--data-root", str(data_root), "--device", "cpu", "--out",
                     str(tmp_path / "cut")]) == 130
    finally:
        suite.attack_correctness = real
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is removed again
    cut = json.loads((tmp_path / "cut" / "attack_test.json").read_text())
    assert cut["interrupted"] is True and result["interrupted"] is False
    assert [(r["attack"], r["eps_255"]) for r in cut["records"]] == [("reference", 2.0)] * 2  # one budget, 2 tasks
    assert "results above are partial" in capsys.readouterr().err
    # --resume continues it: the finished budget is kept, the rest equals an uninterrupted run's numbers
    cut_cmd = ["attack", str(run), "--attack", "reference", "--eps", "2,8", "--subset", "6", "--quiet",
               "--no-sanity", "--data-root", str(data_root), "--device", "cpu", "--out", str(tmp_path / "cut")]
    assert main(cut_cmd + ["--eps", "2,4", "--resume"]) == 2
    assert "settings differ from the stored run's: eps_255 2,8 -> 2,4" in capsys.readouterr().err
    assert main(cut_cmd + ["--resume"]) == 0
    assert "done in an earlier run, kept" in capsys.readouterr().out
    resumed = json.loads((tmp_path / "cut" / "attack_test.json").read_text())
    assert main(cut_cmd[:-1] + [str(tmp_path / "whole")]) == 0
    capsys.readouterr()
    whole = json.loads((tmp_path / "whole" / "attack_test.json").read_text())
    assert not resumed["interrupted"] and _numbers(resumed["records"]) == _numbers(whole["records"])
    assert len(whole["records"]) == 4
    assert main(cut_cmd + ["--resume"]) == 2
    assert "a finished attack" in capsys.readouterr().err
    assert main(["attack", str(run), "--attack", "pgd,nope", "--data-root", str(data_root)]) == 2
    assert "unknown attack" in capsys.readouterr().err
    assert main(["attack", str(run), "--attack", "pgd", "--transfer-from", str(run), "--data-root",
                 str(data_root)]) == 2
    assert "add it to --attack" in capsys.readouterr().err


# --- losses ------------------------------------------------------------------------------------------------------
def test_losses_and_correctness_per_head_type():
    from mailnet.attacks.losses import correctness, dlr_loss, head_loss, objective

    z = torch.tensor([[3.0, 1.0, 0.0, -1.0], [0.0, 2.0, 1.0, 0.5]])
    y = torch.tensor([0, 0])
    # DLR: -(z_y - max other) / (z_pi1 - z_pi3)
    assert torch.allclose(dlr_loss(z, y), torch.tensor([-(3 - 1) / (3 - 0.0), -(0 - 2) / (2 - 0.5)]))
    z2 = torch.tensor([[2.0, -1.0], [0.5, 1.5]])
    assert torch.allclose(dlr_loss(z2, torch.tensor([0, 0])), torch.tensor([-3.0, 1.0]))  # binary: plain margin
    zl = torch.tensor([[2.0, -2.0, 1.0]])
    yl = torch.tensor([[1.0, 0.0, 0.0]])  # multi-label: third label wrong
    assert torch.allclose(correctness([zl], [yl]), torch.tensor([[2 / 3]]))
    assert head_loss(zl, yl, "ce").shape == (1,) and head_loss(zl, yl, "dlr").item() == pytest.approx(-2 - 2 + 1)
    masked = objective([z], [y], [torch.tensor([True, False])])
    assert masked[1] == 0 and masked[0] > 0


def test_autoattack_leaves_multilabel_heads_unscored():
    class MultiLabelHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(16, 3)

        def forward(self, xs):
            f = xs[0].flatten(1)
            return [self.lin(f), self.lin(f) * 2]

    torch.manual_seed(0)
    model = MultiLabelHead().eval()
    x = torch.rand(6, 1, 4, 4)
    with torch.no_grad():
        z = model([x])
    rows = rows_from_tensors([x], [z[0].argmax(1), (z[1] > 0).float()])
    res = run_suite(model, rows, ["autoattack", "pgd"], [8 / 255], "joint",
                    SuiteSettings(steps=2, restarts=1, aa_steps=2, sanity=False))
    aa = {r["task"]: r["robust_acc"] for r in res.records if r["attack"] == "autoattack"}
    assert aa["task0"] <= 1.0 and aa["task1"] != aa["task1"]  # NaN: not applicable
    assert failures(run_sanity(res.records)) == []


def test_carried_over_budgets_keep_the_worst_fraction_of_a_multilabel_head():
    """A multi-label row scores the fraction of its labels that are right; carrying a smaller budget's result over
    must keep the smaller of the two fractions (the worst case), not the new one whenever the old was above 0."""
    from mailnet.attacks import suite

    class Constant(nn.Module):  # answers labels 0 and 1 right, 2 and 3 wrong, whatever the image: 0.5 per row
        def __init__(self):
            super().__init__()
            self.anchor = nn.Parameter(torch.zeros(()))

        def forward(self, xs):
            return [torch.tensor([[5.0, -5.0, 5.0, 5.0]]).repeat(len(xs[0]), 1) + 0 * self.anchor + 0 * xs[0].sum()]

    labels = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(6, 1)
    rows = rows_from_tensors([torch.full((6, 1, 4, 4), 0.5)], [labels])
    earlier = [torch.tensor([0.25, 0.25, 0.75, 0.75, 0.5, 0.0])]
    correct, _, _ = suite.attack_correctness("pgd", Constant(), rows, [4 / 255], SuiteSettings(steps=2, batch_size=6),
                                             eot=1, robust=earlier, random_model=False)
    assert correct[0].tolist() == [0.25, 0.25, 0.5, 0.5, 0.5, 0.0]


def test_restarts_on_a_random_model_are_judged_over_its_eot_draws(monkeypatch):
    """Which rows get another start, and which start wins, must not rest on one noisy forward pass."""
    from mailnet.attacks import suite

    seen = []
    real = suite.pgd

    def spy(*args, **kwargs):
        seen.append((kwargs["eot"], kwargs["score_draws"], kwargs["restarts"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(suite, "pgd", spy)
    eps = 8 / 255
    rows = rows_from_tensors([torch.full((20, 1, 4, 4), 0.5)], [torch.zeros(20, dtype=torch.long)])
    run_suite(ShatteredLinear(eps), rows, ["pgd"], [eps], "joint",
              SuiteSettings(steps=2, restarts=2, eot=3, batch_size=20, sanity=False))
    assert (3, 3, 2) in seen
