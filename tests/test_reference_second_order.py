"""Sophia-G and MKOR against their authors' released code (tests/references/second_order.py), in
float64 for 120 steps.

Sophia-G: the submission's SophiaG class (update_hessian + step) against the release's
`update_hessian` + `_single_tensor_sophiag` on the four shapes, with the same refresh steps and the
same sampled-label gradients (how the labels are drawn and when is the submission's, see its
DIFFERENCES). MKOR: the submission's full form on a two-layer float64 classifier against the
release's factor logic driving torch's SGD, with resets that fire (a low threshold) and without.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from algobench import submission as submission_lib
from algobench.frameworks.torch import TorchBackend
from algobench.schedules import warmup_cosine
from algobench.specs import Preset, Target
from tests.references import adaptive as R
from tests.references import harness as H
from tests.references.second_order import MKORFactors, SophiaGRelease
from tests.test_library_advanced_full import C, Classifier, D, N, batch, rng_for

STEP_HINT = 10**6  # the cosine decay is negligible over the 120 steps: a near-constant lr


def module(name: str):
    return submission_lib.load(name).module


# --- Sophia-G ---------------------------------------------------------------------------------------

def sampled_gradient(step: int, index: int, p: torch.Tensor) -> torch.Tensor:
    """Stands for the gradient of the sampled-label loss: another noise draw."""
    gen = torch.Generator().manual_seed(7_000_000 + 1_000 * step + index)
    return torch.randn(p.shape, generator=gen, dtype=torch.float64) + 0.2 * p


@pytest.mark.parametrize("interval", [1, 10])
def test_sophia_g_update_equals_the_release(interval):
    kw = dict(lr=2e-3, betas=(0.9, 0.99), rho=0.04)
    bs = 24
    spec = [([0, 2], {"weight_decay": 0.1}), ([1, 3], {"weight_decay": 0.0})]
    init = H.initial()
    finals, clipped = [], []
    for kind in ("release", "ours"):
        params = H.make_params(init)
        groups = H.groups_of(params, spec)
        opt = SophiaGRelease(groups, **kw) if kind == "release" else module("sophia_g").SophiaG(groups, eps=1e-15, **kw)
        for step in range(H.STEPS):
            if step % interval == 0:
                g_hat = [sampled_gradient(step, i, p.detach()) for i, p in enumerate(params)]
                if kind == "release":
                    for p, g in zip(params, g_hat):
                        p.grad = g
                    opt.update_hessian()
                else:  # in the order of the groups' params
                    by_id = {id(p): g for p, g in zip(params, g_hat)}
                    opt.update_hessian([by_id[id(p)] for group in groups for p in group["params"]], batch_size=bs)
            for i, p in enumerate(params):
                p.grad = H.noisy_gradient(step, i, p.detach().clone())
            opt.step(bs=bs) if kind == "release" else opt.step()
            if kind == "release":
                state = opt.state[params[0]]
                clipped.append((state["exp_avg"].abs() / (kw["rho"] * bs * state["hessian"] + 1e-15) >= 1).float().mean())
        finals.append([p.detach() for p in params])
    error = H.relative_error(finals[0], finals[1], init)
    assert error <= H.TOL, f"relative error {error:.3e}"
    assert 0.0 < float(torch.stack(clipped).mean()) < 1.0  # both sides of the clip are in the run


# --- MKOR -------------------------------------------------------------------------------------------

HIDDEN = 5


def classifier() -> Classifier:
    preset = Preset(target=Target(metric="val_loss", value=0.1, mode="min"), budget_s=10, eval_period_s=1,
                    step_hint=STEP_HINT, batch_size=N, how_target_was_set="test problem")
    return Classifier(name="classifier", size="smoke", preset=preset, data_dir=Path("."), hidden=HIDDEN,
                      backend=TorchBackend.choose("cpu", "fp32", "off"))


def mkor_hparams(threshold: float) -> dict:
    return {"learning_rate": 0.05, "backend": "sgd", "momentum": 0.9, "weight_decay": 0.05, "inv_freq": 2,
            "reset_threshold": threshold, "clip_value": 2.5, "hybrid_window": 0, "warmup_frac": 0.0,
            "grad_clip": 0.0}


def run_mkor_submission(wl: Classifier, hp: dict) -> torch.nn.Module:
    sub = submission_lib.load("mkor")
    hparams = submission_lib.make_hparams(sub.hparams(hp))
    model = wl.init_model(seed=0)
    state = sub.init_optimizer_state(workload=wl, model_params=model, model_state=None, hyperparameters=hparams,
                                     rng=rng_for(0))
    for step in range(H.STEPS):
        state, model, _, _ = sub.update_params(
            workload=wl, current_param_container=model, current_params_types=wl.param_types, model_state=None,
            hyperparameters=hparams, batch=batch(step), loss_type="cross_entropy", optimizer_state=state,
            eval_results=[], global_step=step, rng=rng_for(step))
    return model


def run_mkor_release(wl: Classifier, hp: dict) -> tuple[torch.nn.Module, MKORFactors]:
    """The first layer preconditioned (the second is the head: the release's `sgd_layers`), then
    torch's SGD with momentum and L2 decay on the weights, as the submission's backend groups."""
    model = wl.init_model(seed=0)
    first, head = model[0], model[1]
    factors = MKORFactors(threshold=hp["reset_threshold"])
    backend = R.TorchSGD([{"params": [first.weight, head.weight], "weight_decay": hp["weight_decay"]},
                          {"params": [first.bias, head.bias], "weight_decay": 0.0}],
                         lr=hp["learning_rate"], momentum=hp["momentum"])
    c = hp["clip_value"]
    for step in range(H.STEPS):
        b = batch(step)
        X = b["inputs"]
        for p in model.parameters():
            p.grad = None
        hidden = first(X)
        hidden.retain_grad()
        loss = F.cross_entropy(head(hidden).reshape(-1, C), b["targets"].reshape(-1))
        loss.backward()
        if step % hp["inv_freq"] == 0:  # `_save_input` / `_save_grad_output`, then the batch mean
            a = torch.cat([X.clamp(-c, c).mean(0), X.new_ones(1)])
            g = (hidden.grad * N).clamp(-c, c).mean(0)
            factors.refresh(a.detach(), g.detach())
        with torch.no_grad():
            gw, gb = factors.precondition(first.weight.grad, first.bias.grad)
            first.weight.grad, first.bias.grad = gw.clone(), gb.clone()
        for group in backend.param_groups:
            group["lr"] = warmup_cosine(step, peak_lr=hp["learning_rate"], warmup_steps=1, decay_steps=STEP_HINT - 1)
        backend.step()
    return model, factors


@pytest.mark.parametrize("threshold", [2.0, 0.9])
def test_mkor_equals_the_releases_factor_logic(threshold):
    wl = classifier()
    hp = mkor_hparams(threshold)
    init = [p.detach().clone() for p in wl.init_model(seed=0).parameters()]
    want, factors = run_mkor_release(wl, hp)
    got = run_mkor_submission(wl, hp)
    error = H.relative_error([p.detach() for p in want.parameters()], [p.detach() for p in got.parameters()], init)
    assert error <= H.TOL, f"relative error {error:.3e}"
    if threshold < 1:  # resets fire, set by either factor: the order of A and G matters
        assert {"AA_inv", "GG_inv"} <= set(factors.exceeded), factors.exceeded
    assert D == 4  # the factor sizes the reference assumes: (D + 1) and HIDDEN
