"""The fast MAIL computes the reference's function: same outputs and gradients (float64: to ~1e-10; float32:
within rounding), same parameters, state dicts loadable both ways, same random draws for Robust-MAIL."""
import copy

import pytest
import torch

from mailnet.layers.emcam import EMCAM
from mailnet.layers.fast import FastEMCAM, FastEMILA, FastMSGDCProjection, split_mix_form
from mailnet.layers.fast.ops import dense_grad
from mailnet.layers.emila import EMILA
from mailnet.layers.msgdc import MSGDCProjection
from mailnet.models import create_model
from mailnet.models.fast import FastMAIL, is_fast, to_fast, to_reference
from mailnet.models.mail import MAIL

TINY = (16, 16, 32, 48)


def _xs(chans, size, b=3, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(b, c, size, size, generator=g).to(dtype) for c in chans]


def _pair(name="mail", chans=(1, 3), size=16, dtype=torch.float32, **kw):
    """(reference, fast) with identical weights and non-trivial BN running statistics."""
    torch.manual_seed(0)
    ref = to_reference(create_model(name, in_chans=list(chans), num_classes=[2, 3][:len(chans)] or [2],
                                    img_size=size, widths=TINY, **kw)).to(dtype)
    ref.train()
    with torch.no_grad():
        for s in range(2):
            ref(_xs(chans, size, b=6, seed=10 + s, dtype=dtype))
    fast = to_fast(copy.deepcopy(ref))
    return to_reference(ref), fast


def _loss_and_grads(model, xs, seed=1):
    model.zero_grad(set_to_none=True)
    xs = [x.clone().requires_grad_(True) for x in xs]
    torch.manual_seed(seed)
    out = model(xs)
    loss = sum((z * torch.linspace(-1, 1, z.shape[1], dtype=z.dtype)).square().sum() for z in out)
    loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    return out, grads, [x.grad for x in xs]


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


@pytest.mark.parametrize("split", [True, False])
@pytest.mark.parametrize("chans,size", [((1, 3), 16), ((3, 3, 1), 12)])
def test_training_outputs_and_gradients_match_in_float64(chans, size, split):
    """Both forms of EMILA's mix: split (no concatenation or shuffle; the default for narrow units on a CPU) and
    concatenated + shuffled (wide units, other devices)."""
    ref, fast = _pair(chans=chans, size=size, dtype=torch.float64)
    xs = _xs(chans, size, dtype=torch.float64)
    ref.train(), fast.train()
    with split_mix_form(split):
        got = _loss_and_grads(fast, xs)
    _assert_same_step(got, _loss_and_grads(ref, xs), tol=1e-9)


def _assert_same_step(got, want, tol):
    """Outputs, parameter gradients and input gradients of two models' step agree to ``tol`` (relative)."""
    (out_f, g_f, gx_f), (out_r, g_r, gx_r) = got, want
    for a, b in zip(out_f, out_r):
        assert _rel(a, b) < tol / 10
    assert g_r.keys() == g_f.keys()
    for k in g_r:
        assert (g_f[k] - g_r[k]).abs().max() <= tol * max(1.0, g_r[k].abs().max().item()), k
    for a, b in zip(gx_f, gx_r):
        assert _rel(a, b) < tol


@pytest.mark.parametrize("split", [True, False])
def test_eval_outputs_match_in_float32_with_and_without_autograd(split):
    ref, fast = _pair()
    ref.eval(), fast.eval()
    xs = _xs((1, 3), 16, b=4)
    with torch.no_grad():
        want = ref(xs)
    with split_mix_form(split), torch.inference_mode():  # folded BN (cached)
        fused = fast(xs)
    with split_mix_form(split), torch.no_grad():  # the cache serves no_grad too
        fused2 = fast(xs)
    with split_mix_form(split):  # eval mode, trainable parameters: unfolded path
        got_grad_path, _, gx_f = _loss_and_grads(fast, xs)
    _, _, gx_r = _loss_and_grads(ref, xs)
    for w, a, b, c in zip(want, fused, fused2, got_grad_path):
        assert torch.allclose(a, w, atol=1e-5, rtol=1e-4)
        assert torch.equal(a, b)
        assert torch.allclose(c, w, atol=1e-5, rtol=1e-4)
    for a, b in zip(gx_f, gx_r):
        assert _rel(a, b) < 1e-3


@pytest.mark.parametrize("split", [True, False])
def test_attacks_use_folded_bn_with_the_same_input_gradients(split):
    """Under ``attack_mode`` (eval, parameters frozen, input gradients on) the fast model folds its BNs; the input
    gradient is the reference's, and once the parameters are trainable again they get gradients as before."""
    from mailnet.attacks.eot import attack_mode
    from mailnet.layers.fast.bn_fold import cache_of

    ref, fast = _pair()
    xs = [x.requires_grad_(True) for x in _xs((1, 3), 16, b=4)]
    grads = []
    for m in (fast, ref):
        with attack_mode(m), split_mix_form(split):
            out = m(xs)
            grads.append(torch.autograd.grad(sum((z * z).sum() for z in out), xs))
            if m is fast:  # the folded weights were built and used (the cache is dropped on leaving eval mode)
                assert cache_of(fast.branches[0].stages[0][0].emila1)._store
    for a, b in zip(*grads):
        assert _rel(a, b) < 1e-3
    fast.eval()
    assert all(p.requires_grad for p in fast.parameters())  # attack_mode restored them
    plain = [x.detach() for x in xs]
    _, g_f, _ = _loss_and_grads(fast, plain)
    ref.eval()
    _, g_r, _ = _loss_and_grads(ref, plain)
    for k in g_r:
        assert (g_f[k] - g_r[k]).abs().max() <= 1e-3 * max(1.0, g_r[k].abs().max().item()), k


def test_inference_paths_for_large_batches_match():
    """Inference with BN folded, unfused (the default) and fused (forced), at any batch size."""
    from mailnet.layers.fast.fused_msgdc import FUSE_MAX_BATCH, fused_inference

    ref, fast = _pair()
    ref.eval(), fast.eval()
    xs = _xs((1, 3), 16, b=FUSE_MAX_BATCH + 2)
    with torch.no_grad():
        want = ref(xs)
        plain = fast(xs)
        with fused_inference(True):
            fused = fast(xs)
        with fused_inference(False):
            small = fast([x[:1] for x in xs])
    for w, a, b, c in zip(want, plain, fused, small):
        assert torch.allclose(a, w, atol=1e-5, rtol=1e-4) and torch.allclose(b, w, atol=1e-5, rtol=1e-4)
        assert torch.allclose(c, w[:1], atol=1e-5, rtol=1e-4)


def test_mac_count_of_the_fast_model_is_the_reference_architecture():
    """Tracers (fvcore, ONNX) see the unfused form, so the cost tables count MAIL's own multiply-adds."""
    from mailnet.profiling import count_macs

    kw = dict(in_chans=[1, 3], num_classes=[2, 3], img_size=16, widths=TINY)
    xs = _xs((1, 3), 16, b=1)
    ref = count_macs(create_model("mail", fast=False, **kw), xs)
    fast = count_macs(create_model("mail", **kw), xs)
    r, f = ref["macs_by_operator"], fast["macs_by_operator"]
    assert abs(r["conv"] - f["conv"]) <= 1e-3 * r["conv"] and r["linear"] == f["linear"]
    assert abs(r["einsum"] - f["matmul"]) <= 1e-3 * r["einsum"]  # the channel DCT: einsum vs matrix product
    assert f.get("batch_norm", 0) < r["batch_norm"]  # BN folded into convs at inference


def test_same_parameters_and_state_dicts_load_both_ways():
    ref, fast = _pair()
    sr, sf = ref.state_dict(), fast.state_dict()
    assert list(sr) == list(sf)
    assert all(sr[k].shape == sf[k].shape and torch.equal(sr[k], sf[k]) for k in sr)
    assert isinstance(fast, FastMAIL) and isinstance(fast, MAIL) and is_fast(fast) and not is_fast(ref)
    # train the fast model a little, then move its weights into a fresh reference model, and back
    opt = torch.optim.SGD(fast.parameters(), lr=0.1)
    fast.train()
    xs = _xs((1, 3), 16, b=4, seed=5)
    sum(z.sum() for z in fast(xs)).backward()
    opt.step()
    fresh_ref = to_reference(create_model("mail", in_chans=[1, 3], num_classes=[2, 3], img_size=16, widths=TINY))
    fresh_ref.load_state_dict(fast.state_dict())
    fresh_fast = to_fast(create_model("mail", in_chans=[1, 3], num_classes=[2, 3], img_size=16, widths=TINY))
    fresh_fast.load_state_dict(fresh_ref.state_dict())
    for m in (fast, fresh_ref, fresh_fast):
        m.eval()
    with torch.no_grad():
        outs = [m(xs) for m in (fast, fresh_ref, fresh_fast)]
    for a, b, c in zip(*outs):
        assert torch.allclose(a, b, atol=1e-5) and torch.allclose(c, b, atol=1e-5)


@pytest.mark.parametrize("optimizer", ["sgd", "fused_adam"])
def test_fold_cache_follows_weight_changes(optimizer):
    """The cached fused/folded inference weights are rebuilt after an optimizer step or a state-dict load, also
    after a fused optimizer step (whose in-place update does not bump the tensors' version counters)."""
    ref, fast = _pair()
    xs = _xs((1, 3), 16, b=2)
    fast.eval()
    with torch.no_grad():
        before = fast(xs)[0].clone()
    fast.train()
    if optimizer == "sgd":
        opt = torch.optim.SGD(fast.parameters(), lr=0.5)
    else:
        opt = torch.optim.Adam(fast.parameters(), lr=0.05, fused=True)
    sum(z.sum() for z in fast(xs)).backward()
    opt.step()
    fast.eval()
    with torch.no_grad():
        after = fast(xs)[0]
    ref.load_state_dict(fast.state_dict())
    ref.eval()
    with torch.no_grad():
        want = ref(xs)[0]
    assert not torch.allclose(before, after, atol=1e-4)
    assert torch.allclose(after, want, atol=1e-5, rtol=1e-4)


def test_robust_mail_fast_replays_the_reference_draws():
    ref, fast = _pair("robust_mail", dtype=torch.float64)  # float64: noise, clipping and cubes amplify rounding
    xs = _xs((1, 3), 16, b=2, dtype=torch.float64)
    for mode in ("train", "eval"):
        outs = []
        for m in (ref, fast):
            getattr(m, mode)()
            m.seed_noise(7)
            with torch.no_grad():
                outs.append(m(xs))
        for a, b in zip(*outs):
            assert torch.allclose(a, b, atol=1e-10), mode
    fast.eval()
    with torch.no_grad():
        assert not torch.equal(fast(xs)[0], fast(xs)[0])  # still random at inference


@pytest.mark.parametrize("split", [True, False])
def test_robust_mail_fast_training_gradients_match_the_reference(split):
    """Robust-MAIL's BN-ended MSGDC branches take the dense-gradient path in the fast model (or the split mix,
    which cannot compose its grouped 1x1 branch with the mix); with the same draw (seeded noise) the parameter and
    input gradients must equal the reference's."""
    ref, fast = _pair("robust_mail", dtype=torch.float64)
    xs = _xs((1, 3), 16, dtype=torch.float64)
    results = []
    for m in (fast, ref):
        m.train()
        m.seed_noise(3)
        with split_mix_form(split if m is fast else None):
            results.append(_loss_and_grads(m, xs))
    _assert_same_step(*results, tol=1e-8)


def test_dense_grad_is_the_identity_with_a_dense_channels_last_gradient():
    x = torch.randn(2, 6, 4, 5).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    seen = {}
    y = dense_grad(x)
    y.register_hook(lambda g: seen.setdefault("upstream", g))
    assert torch.equal(y, x)
    z = torch.cat([y, torch.zeros(2, 3, 4, 5)], dim=1)  # y's incoming gradient: a strided channel slice
    grad = torch.randn(z.shape).contiguous(memory_format=torch.channels_last)
    x.register_hook(lambda g: seen.setdefault("down", g))
    z.backward(grad)
    assert not seen["upstream"].is_contiguous(memory_format=torch.channels_last)
    assert seen["down"].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x.grad, grad[:, :6])
    with torch.no_grad():
        assert dense_grad(x) is x  # nothing to do without autograd


@pytest.mark.parametrize("stacked", [False, True])
@pytest.mark.parametrize("m,cross", [(1, True), (2, True), (3, True), (2, False)])
def test_fast_emcam_matches_reference(m, cross, stacked):
    """Also with the modalities stacked into one batch through the shared DCT and Mop (forced here, with
    gradients; by default only CPU inference at small batches)."""
    from mailnet.layers.fast import stacked_streams

    torch.manual_seed(0)
    ref = EMCAM(16, m, cross_modal=cross).double()
    with torch.no_grad():
        ref.freq_weights.copy_(torch.tensor([0.7, 1.3, -0.4]))
        ref.lambdas.uniform_(0.5, 1.5)
        ref.gamma.fill_(0.8)
        ref.alphas.uniform_(0.5, 1.5)
    fast = copy.deepcopy(ref)
    fast.__class__ = FastEMCAM
    fast.mop.__class__ = FastMSGDCProjection
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(2, 16, 5, 4, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(m)]
    with stacked_streams(stacked):
        ys_r, ys_f = ref(xs), fast(xs)
    for a, b in zip(ys_f, ys_r):
        assert _rel(a, b) < 1e-12
    gr = torch.autograd.grad(sum((y * y).sum() for y in ys_r), list(ref.parameters()) + xs)
    gf = torch.autograd.grad(sum((y * y).sum() for y in ys_f), list(fast.parameters()) + xs)
    for a, b in zip(gf, gr):
        assert (a - b).abs().max() <= 1e-10 * max(1.0, b.abs().max().item())


def test_mop_on_pooled_descriptors_is_one_matrix():
    torch.manual_seed(0)
    ref = MSGDCProjection(32).double()
    fast = copy.deepcopy(ref)
    fast.__class__ = FastMSGDCProjection
    s = torch.randn(5, 32, 1, 1, dtype=torch.float64)
    assert torch.allclose(fast(s), ref(s), atol=1e-12)
    assert torch.allclose(fast.on_vectors(s.flatten(1)), ref(s).flatten(1), atol=1e-12)


@pytest.mark.parametrize("cin,cout,stride", [(16, 16, 1), (16, 32, 2), (3, 16, 1)])
def test_fused_emila_inference_matches(cin, cout, stride):
    torch.manual_seed(0)
    ref = EMILA(cin, cout, stride).double()
    with torch.no_grad():
        for bn in (ref.mix_bn, ref.proj_bn):
            bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.5, 2), bn.weight.uniform_(0.5, 1.5)
    ref.eval()
    fast = copy.deepcopy(ref)
    fast.__class__ = FastEMILA
    fast.msgdc.__class__ = __import__("mailnet.layers.fast", fromlist=["FastMSGDC"]).FastMSGDC
    x = torch.randn(2, cin, 9, 9, dtype=torch.float64)
    from mailnet.layers.fast.fused_msgdc import fused_inference

    with torch.no_grad():
        want = ref(x)
        for mode in (True, False):
            with fused_inference(mode):
                assert torch.allclose(fast(x), want, atol=1e-12), mode


def test_default_mail_is_fast_and_reference_is_available():
    kw = dict(in_chans=[1, 3], num_classes=[2, 3], img_size=16, widths=TINY)
    assert type(create_model("mail", **kw)) is FastMAIL
    assert type(create_model("mail", fast=False, **kw)) is MAIL
    assert type(create_model("robust_mail", fast=False, **kw)) is MAIL


def test_to_fast_also_serves_models_built_on_mail_blocks():
    """cascaded_fusion reuses MAIL's branches and EMCAM pieces; converting its blocks keeps its function."""
    torch.manual_seed(0)
    ref = create_model("cascaded_fusion", in_chans=[1, 3], num_classes=[2, 3], img_size=16, widths=TINY).eval()
    fast = to_fast(copy.deepcopy(ref))
    assert is_fast(fast) and fast.state_dict().keys() == ref.state_dict().keys()
    xs = _xs((1, 3), 16, b=2)
    with torch.no_grad():
        for a, b in zip(fast(xs), ref(xs)):
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("groups,stride,bias", [(1, 1, False), (16, 1, False), (2, 2, True), (16, 2, True)])
def test_small_batch_pointwise_conv_as_matmul(groups, stride, bias):
    """The small-batch 1x1 conv (one batched matmul) equals F.conv2d, in value and in gradient."""
    from mailnet.layers.fast.ops import conv_forward

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(32, 48, 1, stride=stride, groups=groups, bias=bias).double()
    x = torch.randn(3, 32, 9, 9, dtype=torch.float64).to(memory_format=torch.channels_last).requires_grad_()
    got = conv_forward(conv, x, conv.weight, conv.bias)
    want = torch.nn.functional.conv2d(x, conv.weight, conv.bias, stride, 0, 1, groups)
    assert got.shape == want.shape and got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want)
    g = torch.randn_like(want)
    grads = torch.autograd.grad(got, [x, conv.weight], g)
    torch.testing.assert_close(grads, torch.autograd.grad(want, [x, conv.weight], g))


def test_fold_cache_survives_repeated_eval_calls():
    """``eval()`` on a model already in eval mode (loops often call it before every batch) keeps the cached folds;
    only a real train -> eval switch drops them."""
    _, fast = _pair()
    xs = _xs((1, 3), 16, b=2)
    fast.eval()
    with torch.no_grad():
        fast(xs)
    cached = {id(m): m.__dict__.get("_fold_cache") for m in fast.modules() if m.__dict__.get("_fold_cache")}
    assert cached
    fast.eval()
    assert all(m.__dict__.get("_fold_cache") is cached[id(m)] for m in fast.modules() if id(m) in cached)
    fast.train()
    assert not any(m.__dict__.get("_fold_cache") for m in fast.modules())


@pytest.mark.parametrize("chans,size,stem", [((1, 3), 16, "cifar"), ((3, 3, 1), 12, "cifar"), ((1, 3), 40, "imagenet")])
def test_stacked_streams_compute_the_per_branch_function(chans, size, stem):
    """The modality streams' ERLA blocks run as one set of calls (the default for CPU inference at small batches):
    same outputs as the reference at batch 3 (matmul 1x1 convs) and 20 (forced; oneDNN convs), same input
    gradients when forced on under ``attack_mode``, and rebuilt after the weights change."""
    from mailnet.attacks.eot import attack_mode
    from mailnet.layers.fast import stacked_streams
    from mailnet.layers.fast.bn_fold import cache_of

    ref, fast = _pair(chans=chans, size=size, stem=stem)
    ref.eval(), fast.eval()
    for b in (3, 20):
        xs = _xs(chans, size, b=b)
        with torch.no_grad():
            want = ref(xs)
            with stacked_streams(True if b >= 16 else None):
                assert fast.streams_stackable(torch.zeros(b, 1, 1, 1))
                got = fast(xs)
            with stacked_streams(False):
                unstacked = fast(xs)
        assert any(k.startswith("stacked") for k in cache_of(fast)._store)
        for w, a, u in zip(want, got, unstacked):
            assert torch.allclose(a, w, atol=1e-5, rtol=1e-4) and torch.allclose(u, w, atol=1e-5, rtol=1e-4)
    xs = [x.requires_grad_(True) for x in _xs(chans, size, b=4)]
    grads = []
    for m in (fast, ref):
        with attack_mode(m), stacked_streams(True):
            grads.append(torch.autograd.grad(sum((z * z).sum() for z in m(xs)), xs))
    for a, b in zip(*grads):
        assert _rel(a, b) < 1e-3
    with torch.no_grad():  # a changed weight (here: a state dict load) reaches the stacked copy
        for p in ref.parameters():
            p.add_(0.01 * torch.randn_like(p))
        fast.load_state_dict(ref.state_dict())
        new = [x.detach() for x in xs]
        for w, a in zip(ref(new), fast(new)):
            assert torch.allclose(a, w, atol=1e-5, rtol=1e-4)


def test_stacked_streams_are_used_only_where_they_were_measured_to_help():
    from mailnet.layers.fast import fused_inference, stacked_streams

    _, fast = _pair()
    _, robust = _pair("robust_mail")
    _, single = _pair(chans=(3,))
    fast.eval(), robust.eval(), single.eval()
    small, large = torch.zeros(2, 1, 1, 1), torch.zeros(16, 1, 1, 1)
    with torch.no_grad():
        assert fast.streams_stackable(small) and not fast.streams_stackable(large)  # CPU inference, batch < 16
        assert not fast.streams_stackable(small.to("meta"))  # measured on CPUs and a CUDA GPU only
        assert not robust.streams_stackable(small)  # random blocks
        assert not single.streams_stackable(small)  # nothing to stack
        with fused_inference(True):
            assert not fast.streams_stackable(small)  # the forced fused-MSGDC form wins
        with stacked_streams(False):
            assert not fast.streams_stackable(small)
    assert not fast.streams_stackable(small)  # autograd on, trainable parameters: the training path
    fast.train()
    with torch.no_grad(), stacked_streams(True):
        assert not fast.streams_stackable(small)  # training mode never


def test_split_mix_is_used_only_where_it_was_measured_to_help():
    """The split mix (dense 1x1 convs instead of concatenation + shuffle + 2-group conv) costs up to twice the mix's
    multiply-adds; it is the default only for units of at most SPLIT_MIX_MAX_CHANNELS channels on a CPU. A forced
    split of a wide unit still computes the same function."""
    from mailnet.layers.fast.split_mix import SPLIT_MIX_MAX_CHANNELS, split_mix_wanted

    torch.manual_seed(0)
    narrow, wide = (to_fast(EMILA(16, SPLIT_MIX_MAX_CHANNELS)), to_fast(EMILA(16, 2 * SPLIT_MIX_MAX_CHANNELS)))
    x = torch.rand(2, 16, 6, 6)
    for mode in ("train", "eval"):  # training step; attack step and inference
        getattr(narrow, mode)(), getattr(wide, mode)()
        assert split_mix_wanted(narrow, x) and not split_mix_wanted(wide, x)
        with torch.no_grad():
            assert split_mix_wanted(narrow, x) and not split_mix_wanted(wide, x)
    with split_mix_form(False):
        assert not split_mix_wanted(narrow, x)
    with split_mix_form(True):
        assert split_mix_wanted(narrow, x) and not split_mix_wanted(wide, x)
    with split_mix_form(True, max_channels=10 ** 6):
        assert split_mix_wanted(wide, x)
    if torch.cuda.is_available():
        assert not split_mix_wanted(narrow, x.cuda())  # timed on a CPU only
    wide.train()
    xs = x.double().requires_grad_(True)
    wide.double()
    outs = []
    for split in (True, False):
        with split_mix_form(split, max_channels=10 ** 6):
            torch.manual_seed(1)
            y = wide(xs)
            g, = torch.autograd.grad(y.square().sum(), xs)
        outs.append((y, g))
    assert _rel(outs[0][0], outs[1][0]) < 1e-12 and _rel(outs[0][1], outs[1][1]) < 1e-10
