"""Each built-in optimizer against its paper's equations, written out here independently."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from algobench import submission as submission_lib

STEPS = 6
LRS = [0.01 * (0.8**k) for k in range(STEPS)]  # a schedule: the lr changes every step


def grads_sequence(shape, steps, seed=0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape) for _ in range(steps)]


def run_torch(optimizer_cls, theta0: np.ndarray, grads: list[np.ndarray], **kwargs) -> np.ndarray:
    p = torch.nn.Parameter(torch.tensor(theta0, dtype=torch.float64))
    opt = optimizer_cls([p], lr=LRS[0], **kwargs)
    for g, lr in zip(grads, LRS):
        for group in opt.param_groups:
            group["lr"] = lr
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    return p.detach().numpy()


def adan_reference(theta, grads, *, b1, b2, b3, eps, wd, no_prox):
    """Xie et al. (2022), Algorithm 1 in the paper's betas (b_paper = 1 - beta_code), with the
    official code's bias correction of m, v and n."""
    pb1, pb2, pb3 = 1 - b1, 1 - b2, 1 - b3
    m = v = n = np.zeros_like(theta)
    g_prev = grads[0]
    for k, (g, lr) in enumerate(zip(grads, LRS), start=1):
        m = (1 - pb1) * m + pb1 * g
        v = (1 - pb2) * v + pb2 * (g - g_prev)
        n = (1 - pb3) * n + pb3 * (g + (1 - pb2) * (g - g_prev)) ** 2
        m_hat, v_hat, n_hat = m / (1 - b1**k), v / (1 - b2**k), n / (1 - b3**k)
        eta = lr / (np.sqrt(n_hat) + eps)
        if no_prox:
            theta = theta * (1 - lr * wd) - eta * (m_hat + (1 - pb2) * v_hat)
        else:
            theta = (theta - eta * (m_hat + (1 - pb2) * v_hat)) / (1 + lr * wd)
        g_prev = g
    return theta


def nadamw_reference(theta, grads, *, b1, b2, eps, wd):
    """AlgoPerf's NAdamW: decoupled decay, Adam moments, Nesterov's look-ahead first moment."""
    m = v = np.zeros_like(theta)
    for t, (g, lr) in enumerate(zip(grads, LRS), start=1):
        theta = theta * (1 - lr * wd)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_nesterov = b1 * m + (1 - b1) * g
        theta = theta - lr / (1 - b1**t) * m_nesterov / (np.sqrt(v / (1 - b2**t)) + eps)
    return theta


def adamw_reference(theta, grads, *, b1, b2, eps, wd):
    m = v = np.zeros_like(theta)
    for t, (g, lr) in enumerate(zip(grads, LRS), start=1):
        theta = theta * (1 - lr * wd)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        theta = theta - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return theta


@pytest.mark.parametrize("no_prox", [False, True])
def test_adan_matches_paper(no_prox):
    Adan = submission_lib.load("adan").module.Adan
    theta0 = np.random.default_rng(1).normal(size=(4, 3))
    grads = grads_sequence(theta0.shape, STEPS)
    got = run_torch(Adan, theta0, grads, betas=(0.98, 0.92, 0.99), eps=1e-8, weight_decay=0.05, no_prox=no_prox)
    want = adan_reference(theta0, grads, b1=0.98, b2=0.92, b3=0.99, eps=1e-8, wd=0.05, no_prox=no_prox)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_adan_first_step_has_no_gradient_difference():
    """g_{-1} = g_0: after one step, v (the difference average) is zero."""
    Adan = submission_lib.load("adan").module.Adan
    p = torch.nn.Parameter(torch.ones(3))
    opt = Adan([p], lr=0.1)
    p.grad = torch.tensor([1.0, -2.0, 3.0])
    opt.step()
    assert torch.equal(opt.state[p]["exp_avg_diff"], torch.zeros(3))


def test_nadamw_matches_algoperf():
    NAdamW = submission_lib.load("nadamw").module.NAdamW
    theta0 = np.random.default_rng(2).normal(size=(5,))
    grads = grads_sequence(theta0.shape, STEPS, seed=3)
    got = run_torch(NAdamW, theta0, grads, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    want = nadamw_reference(theta0, grads, b1=0.9, b2=0.95, eps=1e-8, wd=0.1)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_adamw_submission_uses_decoupled_decay():
    """The adamw submission builds torch's AdamW with its betas: checked against the equations."""
    theta0 = np.random.default_rng(4).normal(size=(3, 2))
    grads = grads_sequence(theta0.shape, STEPS, seed=5)
    got = run_torch(torch.optim.AdamW, theta0, grads, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    want = adamw_reference(theta0, grads, b1=0.9, b2=0.95, eps=1e-8, wd=0.1)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,cls,kwargs", [
    ("adan", "Adan", {"weight_decay": 0.02}),
    ("nadamw", "NAdamW", {"weight_decay": 0.1}),
])
def test_state_dict_round_trip_continues_identically(name, cls, kwargs):
    Opt = getattr(submission_lib.load(name).module, cls)
    grads = grads_sequence((6,), 8, seed=7)

    def fresh():
        p = torch.nn.Parameter(torch.linspace(-1, 1, 6, dtype=torch.float64))
        return p, Opt([p], lr=0.01, **kwargs)

    p, opt = fresh()
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
    straight = p.detach().clone()

    p, opt = fresh()
    for g in grads[:4]:
        p.grad = torch.tensor(g)
        opt.step()
    saved_p, saved_opt = p.detach().clone(), opt.state_dict()
    p2, opt2 = fresh()
    with torch.no_grad():
        p2.copy_(saved_p)
    opt2.load_state_dict(saved_opt)
    for g in grads[4:]:
        p2.grad = torch.tensor(g)
        opt2.step()
    assert torch.equal(p2.detach(), straight)


def test_warmup_cosine_phases():
    from algobench.schedules import warmup_cosine

    lr = [warmup_cosine(s, peak_lr=1.0, warmup_steps=10, decay_steps=90) for s in range(120)]
    assert lr[0] == pytest.approx(0.1) and lr[9] == pytest.approx(1.0)
    assert lr[10] == pytest.approx(1.0)
    assert lr[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr[100] == pytest.approx(0.0, abs=1e-12) and lr[119] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(lr[10:], lr[11:]))


# --- fidelity to the authors' code: every submission says what it was compared with ---------------

@pytest.mark.parametrize("name", submission_lib.builtin_names())
def test_every_submission_states_its_reference_and_its_differences(name):
    """REFERENCE (the authors' code and release), EQUAL_UNDER, REFERENCE_TEST (a test that exists, or
    "" when not compared) and DIFFERENCES (a list of sentences) are module constants of each."""
    import re
    from pathlib import Path

    module = submission_lib.load(name).module
    assert isinstance(module.REFERENCE, str) and module.REFERENCE
    assert isinstance(module.EQUAL_UNDER, str) and module.EQUAL_UNDER
    assert isinstance(module.DIFFERENCES, list) and all(isinstance(d, str) and d for d in module.DIFFERENCES)
    if module.REFERENCE_TEST:
        path, test = module.REFERENCE_TEST.split("::")
        source = (Path(__file__).parent.parent / path).read_text()
        assert re.search(rf"^def {test}\(", source, re.MULTILINE), module.REFERENCE_TEST


@pytest.mark.parametrize("every", [False, True])
def test_nadamw_decay_every_tensor_gives_algoperfs_decay(every):
    """AlgoPerf's NAdamW decays every tensor; the default exempts biases and norms."""
    from types import SimpleNamespace

    from algobench.workload import ParamKind

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
    workload = SimpleNamespace(param_types={"0.weight": ParamKind.WEIGHT, "0.bias": ParamKind.BIAS,
                                            "1.weight": ParamKind.NORM, "1.bias": ParamKind.NORM})
    mod = submission_lib.load("nadamw").module
    hparams = submission_lib.make_hparams({**mod.HPARAMS, "decay_every_tensor": every})
    optimizer = mod.make_optimizer(model=model, hparams=hparams, workload=workload)
    decayed = [p for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]]
    assert len(decayed) == (4 if every else 1)
