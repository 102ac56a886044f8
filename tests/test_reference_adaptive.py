"""The element-wise optimizers of submissions/ against their authors' released code, re-implemented
in tests/references/ (float64, 120 steps, a matrix, a bias, a 4-D conv filter and a scalar).

Each test runs the submission's optimizer class and the reference from the same start on the same
parameter-dependent gradient stream and requires ||p_ref - p_ours|| / ||p_ref - p_init|| <= 1e-10.
Every boolean option is run both ways; the rectification switch of AdaBelief (step 6 at beta2 =
0.999), the projections of AdamP/SGDP (both views) and None gradients are in the streams, and a
`*_is_sensitive` check shows that the stream exercises the branch (switching it off changes the
result). `NONE_ALONE` puts the tensor that lacks a gradient in its own group: the authors count
steps per tensor, the submissions per group (a documented difference), which agree then.
"""

from __future__ import annotations

import pytest
import torch

from algobench import submission as submission_lib
from tests.references import adaptive as R
from tests.references import harness as H
from tests.references.stable_spam import StableSPAMRelease

DECAY_SPLIT = [([0, 2], {"weight_decay": 0.1}), ([1, 3], {"weight_decay": 0.0})]  # weights vs bias, scalar
NONE_ALONE = [([0, 2, 3], {"weight_decay": 0.1}), ([1], {"weight_decay": 0.0})]
BIAS_SOMETIMES_NONE = H.with_none(H.noisy_gradient, lambda step, index: index == 1 and step % 7 in (2, 3))


def module(name: str):
    return submission_lib.load(name).module


def radial_free(step: int, index: int, p: torch.Tensor) -> torch.Tensor:
    """Noisy gradients with the radial component removed per output channel (steps 0, 3, ...) or for
    the whole tensor (steps 1, 4, ...): AdamP's channel view, then its layer view, fires."""
    g = H.noisy_gradient(step, index, p)
    if p.dim() < 2 or step % 3 == 2:
        return g
    rows = p.reshape(len(p), -1) if step % 3 == 0 else p.reshape(1, -1)
    G = g.reshape(rows.shape)
    G = G - (G * rows).sum(1, keepdim=True) / (rows * rows).sum(1, keepdim=True) * rows
    return G.reshape(p.shape)


def check(ours, reference, spec, grad_fn=H.noisy_gradient, **kwargs) -> float:
    error = H.compare(ours, reference, spec, grad_fn, **kwargs)
    assert error <= H.TOL, f"relative error {error:.3e}"
    return error


def test_the_metric_catches_a_learning_rate_off_by_1e_4():
    error = H.compare(lambda g: R.TorchAdamW(g, lr=1e-2 * (1 + 1e-4)), lambda g: R.TorchAdamW(g, lr=1e-2), [H.ALL])
    assert error > 1e-6


# --- torch's and AlgoPerf's baselines -------------------------------------------------------------

@pytest.mark.parametrize("spec,grad_fn", [(DECAY_SPLIT, H.noisy_gradient), (NONE_ALONE, BIAS_SOMETIMES_NONE)])
def test_adamw_equals_torch_single_tensor_adamw(spec, grad_fn):
    kw = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    check(lambda g: torch.optim.AdamW(g, foreach=True, **kw), lambda g: R.TorchAdamW(g, **kw), spec, grad_fn)


@pytest.mark.parametrize("spec,grad_fn", [(DECAY_SPLIT, H.noisy_gradient), (NONE_ALONE, BIAS_SOMETIMES_NONE)])
def test_nadamw_equals_algoperf_nadamw(spec, grad_fn):
    kw = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    check(lambda g: module("nadamw").NAdamW(g, **kw), lambda g: R.AlgoPerfNAdamW(g, **kw), spec, grad_fn)


@pytest.mark.parametrize("name,nesterov", [("sgd_nesterov", True), ("heavy_ball", False)])
def test_sgd_baselines_equal_torch_single_tensor_sgd(name, nesterov):
    """Both submissions build torch.optim.SGD(foreach=True); AlgoPerf's baselines call torch's SGD."""
    mod = module(name)
    spec = [([0, 2], {"weight_decay": 1e-3}), ([1, 3], {"weight_decay": 0.0})]
    hp = mod.HPARAMS
    kw = dict(lr=0.05, momentum=1.0 - hp["one_minus_beta1"], nesterov=nesterov)
    check(lambda g: torch.optim.SGD(g, foreach=True, **kw), lambda g: R.TorchSGD(g, **kw), spec, BIAS_SOMETIMES_NONE)


# --- AdaBelief, AdamP, SGDP -------------------------------------------------------------------

@pytest.mark.parametrize("rectify", [True, False])
@pytest.mark.parametrize("eps", [1e-16, 1e-8])
def test_adabelief_equals_adabelief_pytorch_0_2_1(rectify, eps):
    kw = dict(lr=1e-2, betas=(0.9, 0.999), eps=eps, rectify=rectify)
    check(lambda g: module("adabelief").AdaBelief(g, **kw), lambda g: R.AdaBelief021(g, **kw), DECAY_SPLIT)


def test_adabelief_with_none_gradients():
    kw = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-16, rectify=True)
    check(lambda g: module("adabelief").AdaBelief(g, **kw), lambda g: R.AdaBelief021(g, **kw), NONE_ALONE,
          BIAS_SOMETIMES_NONE)


def test_adabelief_rectification_switch_is_in_the_run():
    """With beta2 = 0.999, N_t = 4.996 at step 5 (SGD step) and 5.99 at step 6 (rectified): a run of
    5 steps differs from one that rectifies from step 1, and the first steps are SGD steps."""
    beta2 = 0.999
    n_inf = 2 / (1 - beta2) - 1
    n = [n_inf - 2 * t * beta2**t / (1 - beta2**t) for t in (5, 6)]
    assert n[0] < 5 <= n[1]
    rectified = H.compare(lambda g: R.AdaBelief021(g, lr=1e-2, rectify=True),
                          lambda g: R.AdaBelief021(g, lr=1e-2, rectify=False), [H.ALL], steps=5)
    assert rectified > 1e-3


@pytest.mark.parametrize("nesterov", [False, True])
def test_adamp_equals_clovaai_adamp(nesterov):
    kw = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, delta=0.1, wd_ratio=0.1, nesterov=nesterov)
    check(lambda g: module("adamp").AdamP(g, **kw), lambda g: R.ClovaAdamP(g, **kw), DECAY_SPLIT, radial_free)
    check(lambda g: module("adamp").AdamP(g, **kw), lambda g: R.ClovaAdamP(g, **kw), NONE_ALONE,
          H.with_none(radial_free, lambda step, index: index == 1 and step % 7 == 2))


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgdp_equals_clovaai_sgdp(nesterov):
    kw = dict(lr=0.05, momentum=0.9, eps=1e-8, delta=0.1, wd_ratio=0.1, nesterov=nesterov)
    spec = [([0, 2], {"weight_decay": 1e-3}), ([1, 3], {"weight_decay": 0.0})]
    check(lambda g: module("sgdp").SGDP(g, **kw), lambda g: R.ClovaSGDP(g, **kw), spec, radial_free)
    check(lambda g: module("sgdp").SGDP(g, **kw), lambda g: R.ClovaSGDP(g, **kw), spec,
          H.with_none(radial_free, lambda step, index: index == 2 and step % 5 == 1))


@pytest.mark.parametrize("cls", [R.ClovaAdamP, R.ClovaSGDP])
def test_projections_are_in_the_run(cls):
    """Switching the projection off (delta = 0: no cosine is below 0) changes the result a lot."""
    kw = dict(lr=1e-2, weight_decay=1e-3)
    assert H.compare(lambda g: cls(g, delta=0.0, **kw), lambda g: cls(g, delta=0.1, **kw), [H.ALL], radial_free) > 1e-3


# --- diffGrad, LAMB, Lion, Adan, SGD-SaI -------------------------------------------------------------

@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_diffgrad_equals_diffgrad_v2(weight_decay):
    spec = [([0, 2], {"weight_decay": weight_decay}), ([1, 3], {"weight_decay": 0.0})]
    kw = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8)
    check(lambda g: module("diffgrad").DiffGrad(g, **kw), lambda g: R.DiffGradV2(g, **kw), spec)
    none_alone = [([0, 2, 3], {"weight_decay": weight_decay}), ([1], {"weight_decay": 0.0})]
    check(lambda g: module("diffgrad").DiffGrad(g, **kw), lambda g: R.DiffGradV2(g, **kw), none_alone,
          BIAS_SOMETIMES_NONE)


def test_lamb_equals_tensorflow_addons_lamb():
    """Decayed tensors are layer-adapted, the rest take the plain Adam step (the submission's
    no-decay group has adapt=False); the step count is shared, so a None gradient is in a group."""
    kw = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-6)
    spec = [([0, 2], {"weight_decay": 0.01, "adapt": True}), ([1, 3], {"weight_decay": 0.0, "adapt": False})]

    def reference(groups):
        return R.AddonsLAMB([{**{k: v for k, v in g.items() if k != "adapt"}, "decay": g["adapt"]} for g in groups],
                            **kw)

    check(lambda g: module("lamb").Lamb(g, **kw), reference, spec)
    shared = [([0, 1, 2], {"weight_decay": 0.01, "adapt": True}), ([3], {"weight_decay": 0.0, "adapt": False})]
    check(lambda g: module("lamb").Lamb(g, **kw), reference, shared, BIAS_SOMETIMES_NONE)


def test_lion_equals_lucidrains_lion():
    kw = dict(lr=1e-3, betas=(0.95, 0.98))
    spec = [([0, 2], {"weight_decay": 0.3}), ([1, 3], {"weight_decay": 0.0})]
    check(lambda g: module("lion").Lion(g, **kw), lambda g: R.LucidrainsLion(g, **kw), spec, BIAS_SOMETIMES_NONE)


@pytest.mark.parametrize("no_prox", [False, True])
def test_adan_equals_sail_sg_adan(no_prox):
    """The step count is the group's in both; a None gradient is in a group with gradients."""
    kw = dict(lr=1e-2, betas=(0.98, 0.92, 0.99), eps=1e-8, no_prox=no_prox)
    spec = [([0, 1, 2], {"weight_decay": 0.02}), ([3], {"weight_decay": 0.0})]
    check(lambda g: module("adan").Adan(g, **kw), lambda g: R.SailAdan(g, **kw), spec, BIAS_SOMETIMES_NONE)


@pytest.mark.filterwarnings("ignore:std\\(\\)")
def test_sgd_sai_equals_sgd_sai_1_0_3():
    """gsnr at the first step (the scalar's std is nan -> 0, so its gsnr is |g| / eps: a tiny lr
    keeps it finite), then momentum; the bias skips steps after the first."""
    kw = dict(lr=1e-6, momentum=0.9, eps=1e-8)
    spec = [([0, 1, 2, 3], {"weight_decay": 0.1})]
    check(lambda g: module("sgd_sai").SGDSaI(g, **kw), lambda g: R.SGDSaI103(g, **kw), spec, BIAS_SOMETIMES_NONE)
    spec = [([0, 2], {"weight_decay": 0.1}), ([1], {"weight_decay": 0.0})]
    init = H.initial()[:3]
    check(lambda g: module("sgd_sai").SGDSaI(g, lr=1e-2, momentum=0.9), lambda g: R.SGDSaI103(g, lr=1e-2, momentum=0.9),
          spec, init=init)


# --- Schedule-Free AdamW ------------------------------------------------------------------------

def swap_every_10(optimizer, step):
    """An evaluation every 10 steps: to x and back to y (a no-op on the update if exact)."""
    if step % 10 == 5:
        optimizer.eval()
        optimizer.train()


@pytest.mark.parametrize("r,warmup", [(0.75, 10), (0.0, 0)])
def test_schedule_free_equals_schedulefree_1_4_1(r, warmup):
    kw = dict(lr=1e-2, betas=(0.9, 0.9955), eps=1e-8, warmup_steps=warmup, r=r, weight_lr_power=2.0)
    SF = module("schedule_free_adamw").AdamWScheduleFree
    spec = [([0, 1, 2], {"weight_decay": 0.08}), ([3], {"weight_decay": 0.0})]
    check(lambda g: SF(g, **kw), lambda g: R.ScheduleFree141(g, **kw), spec, BIAS_SOMETIMES_NONE,
          before_step=swap_every_10)


def test_schedule_free_evaluation_point_equals_the_release():
    """x = lerp(y, z, 1 - 1/beta1) after a run: the parameters `prepare_for_eval` leaves."""
    kw = dict(lr=1e-2, betas=(0.9, 0.9955), eps=1e-8, weight_decay=0.08, warmup_steps=10, r=0.75)
    SF = module("schedule_free_adamw").AdamWScheduleFree
    init = H.initial()
    finals = []
    for make in (lambda g: R.ScheduleFree141(g, **kw), lambda g: SF(g, **kw)):
        params = H.make_params(init)
        opt = make(H.groups_of(params, [H.ALL]))
        for step in range(H.STEPS):
            for i, p in enumerate(params):
                p.grad = H.noisy_gradient(step, i, p.detach().clone())
            opt.step()
        opt.eval()
        finals.append([p.detach().clone() for p in params])
    assert H.relative_error(finals[0], finals[1], init) <= H.TOL


# --- Stable-SPAM ----------------------------------------------------------------------------------

def spiky(step: int, index: int, p: torch.Tensor) -> torch.Tensor:
    """Noisy gradients with a 50x spike in one entry every 9 steps (AdaClip clips it)."""
    g = H.noisy_gradient(step, index, p)
    if step % 9 == 4 and g.numel() > 1:
        g.view(-1)[step % g.numel()] *= 50.0
    return g


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_stable_spam_equals_the_release_before_the_first_reset(weight_decay):
    """Equal while no momentum reset has happened (reset_interval beyond the run, and 0 = never):
    after a reset the release shares its restarted step count with AdaClip/AdaGN and applies the
    stale moments once, two documented differences (see test_stable_spam_reset_differs...)."""
    ours_cls = module("stable_spam").StableSPAM
    kw = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, gamma1=0.7, gamma2=0.9)
    for interval in (0, 500):
        spec = [([0, 2, 3], {"weight_decay": weight_decay}), ([1], {"weight_decay": 0.0})]
        check(lambda g, i=interval: ours_cls(g, theta=0.999, reset_interval=i, **kw),
              lambda g, i=interval: StableSPAMRelease(g, gamma3=0.999, update_proj_gap=i, **kw), spec,
              H.with_none(spiky, lambda step, index: index == 1 and step % 7 == 2))


def test_stable_spam_reset_differs_from_the_release_as_documented():
    ours_cls = module("stable_spam").StableSPAM
    kw = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, gamma1=0.7, gamma2=0.9)
    error = H.compare(lambda g: ours_cls(g, theta=0.999, reset_interval=40, **kw),
                      lambda g: StableSPAMRelease(g, gamma3=0.999, update_proj_gap=40, **kw), [H.ALL], spiky)
    assert error > 1e-6
    before = H.compare(lambda g: ours_cls(g, theta=0.999, reset_interval=40, **kw),
                       lambda g: StableSPAMRelease(g, gamma3=0.999, update_proj_gap=40, **kw), [H.ALL], spiky,
                       steps=39)
    assert before <= H.TOL
