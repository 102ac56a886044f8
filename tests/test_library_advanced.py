"""Muon, AuON, Stable-SPAM and FRUGAL against their papers' equations, written out again here in
numpy float64 (nothing below the references imports the submissions' math)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from algobench import submission as submission_lib
from algobench.frameworks.torch import TorchBackend
from workloads import WORKLOADS

STEPS = 7
LRS = [0.02 * (0.85**k) for k in range(STEPS)]  # a schedule: the lr changes every step
SHAPES = {"w1": (5, 3), "w2": (5, 3), "w3": (3, 6), "b": (4,)}  # two same-shaped matrices: one batched call
MATRICES = ("w1", "w2", "w3")


def module(name: str):
    return submission_lib.load(name).module


def grads_for(step: int, shapes=SHAPES, spike: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(100 + step)
    grads = {k: rng.normal(size=s) for k, s in shapes.items()}
    if spike and step == 3:
        grads["w1"][0, 0] = 80.0  # a gradient spike for Stable-SPAM's AdaClip
    return grads


def initial(shapes=SHAPES) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {k: rng.normal(size=s) for k, s in shapes.items()}


def run_torch(optimizer_fn, groups_spec, *, lr_scales=None, steps=STEPS, shapes=SHAPES, spike=False, theta=None):
    """Build params from `theta`, groups from `groups_spec` [(names, extra)], step with grads_for()."""
    params = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in (theta or initial(shapes)).items()}
    groups = [{"params": [params[n] for n in names], **extra} for names, extra in groups_spec]
    opt = optimizer_fn(groups)
    for step in range(steps):
        for i, group in enumerate(opt.param_groups):
            group["lr"] = LRS[step] * (lr_scales[i] if lr_scales else 1.0)
        for k, g in grads_for(step, shapes, spike).items():
            params[k].grad = torch.tensor(g)
        opt.step()
    return {k: p.detach().numpy() for k, p in params.items()}, opt


# --- references ---------------------------------------------------------------------------------

def ns_reference(G: np.ndarray, steps: int) -> np.ndarray:
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.T if G.shape[0] > G.shape[1] else G
    X = X / (np.linalg.norm(X) + 1e-7)
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if G.shape[0] > G.shape[1] else X


def cosh_reference(M: np.ndarray) -> np.ndarray:
    X = M / (np.linalg.norm(M) + 1e-7)
    return X / (np.sqrt(np.mean(np.cosh(X) ** 2)) + 1e-8)


def matrix_momentum_reference(direction, *, mu, nesterov, wd, adam_scale, b1, b2, eps, adam_wd):
    theta, buf, m, v = initial(), {}, {}, {}
    for t, lr in enumerate(LRS, start=1):
        g = grads_for(t - 1)
        for k in MATRICES:
            buf[k] = mu * buf.get(k, 0) + (1 - mu) * g[k]
            M = mu * buf[k] + (1 - mu) * g[k] if nesterov else buf[k]
            rows, cols = M.shape
            theta[k] = theta[k] * (1 - lr * wd) - lr * np.sqrt(max(1, rows / cols)) * direction(M)
        lr_a = lr * adam_scale
        m["b"] = b1 * m.get("b", 0) + (1 - b1) * g["b"]
        v["b"] = b2 * v.get("b", 0) + (1 - b2) * g["b"] ** 2
        m_hat, v_hat = m["b"] / (1 - b1**t), v["b"] / (1 - b2**t)
        theta["b"] = theta["b"] * (1 - lr_a * adam_wd) - lr_a * m_hat / (np.sqrt(v_hat) + eps)
    return theta


def stable_spam_reference(*, b1, b2, eps, g1, g2, th, interval, wd):
    theta = initial()
    st = {k: {"T": 0.0, "mu": 0.0, "nu": 0.0, "m": 0.0, "v": 0.0} for k in theta}
    s = 0
    for t, lr in enumerate(LRS, start=1):
        grads = grads_for(t - 1, spike=True)
        if t % interval == 0:
            s = 0
        s += 1
        for k, g in grads.items():
            q = st[k]
            theta[k] = theta[k] * (1 - lr * wd)
            g_max = np.abs(g).max()
            q["T"] = th * q["T"] + (1 - th) * g_max
            T_hat = q["T"] / (1 - th**t)
            g = np.where(np.abs(g) > T_hat, g / g_max * T_hat, g)
            n = np.linalg.norm(g)
            q["mu"] = g1 * q["mu"] + (1 - g1) * n
            q["nu"] = g2 * q["nu"] + (1 - g2) * n**2
            g = g / n * (q["mu"] / (1 - g1**t)) / (np.sqrt(q["nu"] / (1 - g2**t)) + eps)
            if t % interval == 0:
                q["m"], q["v"] = 0.0, 0.0
            q["m"] = b1 * q["m"] + (1 - b1) * g
            q["v"] = b2 * q["v"] + (1 - b2) * g**2
            theta[k] = theta[k] - lr / (1 - b1**s) * q["m"] / (np.sqrt(q["v"]) / np.sqrt(1 - b2**s) + eps)
    return theta


def frugal_reference(*, order, density, gap, b1, b2, eps, wd, free_scale, projection, shapes):
    """Matrices (all but 'b') split; 'b' plain AdamW. Block: active set in `order`; SVD: top-r."""
    theta = initial(shapes)
    names = [k for k in shapes if k != "b"]
    st, sb = {}, {"m": 0.0, "v": 0.0}
    k_active = max(1, round(len(names) * density))
    start = len(names) - 1 if order == "descending" else 0
    for t, lr in enumerate(LRS, start=1):
        grads = grads_for(t - 1, shapes)
        if (t - 1) % gap == 0:  # rotation: new subspace, fresh Adam state
            s, st = 0, {}
            if projection == "block":
                step_dir = -1 if order == "descending" else 1
                active = {names[(start + step_dir * j) % len(names)] for j in range(k_active)}
                start = (start + step_dir * k_active) % len(names)
                st = {n: {"m": 0.0, "v": 0.0} for n in active}
            else:
                for n in names:
                    U, _, Vh = np.linalg.svd(grads[n], full_matrices=False)
                    rows, cols = grads[n].shape
                    P = Vh[:max(1, round(cols * density))] if rows >= cols else U[:, :max(1, round(rows * density))]
                    st[n] = {"P": P, "m": 0.0, "v": 0.0, "right": rows >= cols}
        s += 1
        for n in names:
            g = grads[n]
            theta[n] = theta[n] * (1 - lr * wd)
            if projection == "svd":
                q = st[n]
                low = g @ q["P"].T if q["right"] else q["P"].T @ g
                back = (lambda x, P=q["P"]: x @ P) if q["right"] else (lambda x, P=q["P"]: P @ x)
                full, free = low, g - back(low)
            else:
                q = st.get(n)
                full, free = (g, 0 * g) if q else (None, g)
            if full is not None:
                q["m"] = b1 * q["m"] + (1 - b1) * full
                q["v"] = b2 * q["v"] + (1 - b2) * full**2
                adam = q["m"] / (np.sqrt(q["v"]) / np.sqrt(1 - b2**s) + eps) / (1 - b1**s)
                theta[n] = theta[n] - lr * (back(adam) if projection == "svd" else adam)
            if projection == "svd" or q is None:
                theta[n] = theta[n] - lr * free_scale * np.sign(free)
        g = grads["b"]
        theta["b"] = theta["b"] * (1 - lr * wd)
        sb["m"] = b1 * sb["m"] + (1 - b1) * g
        sb["v"] = b2 * sb["v"] + (1 - b2) * g**2
        theta["b"] = theta["b"] - lr / (1 - b1**t) * sb["m"] / (np.sqrt(sb["v"]) / np.sqrt(1 - b2**t) + eps)
    return theta


# --- tests ----------------------------------------------------------------------------------------

def matrix_groups(wd, adam_wd):
    return [(MATRICES, {"use_matrix": True, "weight_decay": wd}),
            (("b",), {"use_matrix": False, "weight_decay": adam_wd})]


@pytest.mark.parametrize("nesterov", [True, False])
def test_muon_matches_keller_jordans_equations(nesterov):
    mod = module("muon")
    got, _ = run_torch(lambda g: mod.MatrixMomentum(g, direction=lambda M: mod.newton_schulz(M, 5), momentum=0.95,
                                                    nesterov=nesterov, betas=(0.9, 0.95), eps=1e-10),
                       matrix_groups(0.05, 0.01), lr_scales=[1.0, 0.15])
    want = matrix_momentum_reference(lambda M: ns_reference(M, 5), mu=0.95, nesterov=nesterov, wd=0.05,
                                     adam_scale=0.15, b1=0.9, b2=0.95, eps=1e-10, adam_wd=0.01)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-9, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("ns_steps", [0, 1])
def test_auon_matches_the_papers_cosh_normalization(ns_steps):
    mod = module("auon")
    got, _ = run_torch(lambda g: mod.MatrixMomentum(g, direction=lambda M: mod.cosh_rms_direction(M, ns_steps),
                                                    momentum=0.9, betas=(0.9, 0.95), eps=1e-10),
                       matrix_groups(0.05, 0.0), lr_scales=[1.0, 0.1])
    direction = (lambda M: cosh_reference(ns_reference(M, ns_steps))) if ns_steps else cosh_reference
    want = matrix_momentum_reference(direction, mu=0.9, nesterov=True, wd=0.05, adam_scale=0.1, b1=0.9, b2=0.95,
                                     eps=1e-10, adam_wd=0.0)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-9, atol=1e-12, err_msg=k)


def test_orthogonalized_update_has_flat_spectrum_and_cosh_update_is_unit_norm():
    G = torch.randn(4, 64, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    G = G * torch.logspace(-2, 0, 32, dtype=torch.float64)  # singular values spread over ~180x
    s = torch.linalg.svdvals(module("muon").newton_schulz(G, 5))
    assert s.min() > 0.6 and s.max() < 1.3  # U S' V^T with S' in about [0.7, 1.2]
    U = module("auon").cosh_rms_direction(G)
    assert torch.allclose(torch.linalg.matrix_norm(U), torch.ones(4, dtype=torch.float64), rtol=1e-3)


def test_hidden_matrices_are_the_block_weights_of_gpt2(tmp_path: Path):
    spec = WORKLOADS.get("gpt2")
    wl = spec.build_torch(preset=spec.presets["smoke"], size="smoke", data_dir=tmp_path,
                          backend=TorchBackend.choose("cpu"))
    model = wl.init_model(seed=0)
    groups = module("muon").make_optimizer(model=model, hparams=submission_lib.make_hparams(
        submission_lib.load("muon").defaults), workload=wl).param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    matrices = {names[id(p)] for p in groups[0]["params"]}
    assert groups[0]["use_matrix"] and all(not g["use_matrix"] for g in groups[1:])
    assert matrices == {f"h.{i}.{m}.weight" for i in range(3) for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc",
                                                                         "mlp.c_proj")}
    assert groups[1]["lr_scale"] == pytest.approx(3e-3 / 0.02)


def test_stable_spam_matches_the_papers_algorithm():
    mod = module("stable_spam")
    kw = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.1, "gamma1": 0.7, "gamma2": 0.9, "theta": 0.999,
          "reset_interval": 3}
    got, _ = run_torch(lambda g: mod.StableSPAM(g, **kw), [(tuple(SHAPES), {})], spike=True)
    want = stable_spam_reference(b1=0.9, b2=0.999, eps=1e-8, g1=0.7, g2=0.9, th=0.999, interval=3, wd=0.1)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-9, atol=1e-12, err_msg=k)


def test_stable_spam_clips_the_spike_and_resets_the_moments():
    mod = module("stable_spam")
    p = torch.nn.Parameter(torch.zeros(3, 3, dtype=torch.float64))
    opt = mod.StableSPAM([p], lr=0.0, reset_interval=201)
    for _ in range(200):
        p.grad = torch.ones(3, 3, dtype=torch.float64)
        opt.step()
    p.grad = torch.ones(3, 3, dtype=torch.float64)
    p.grad[1, 1] = 1000.0
    opt.step()  # step 201: the spike is cut to the running max (~6.5 here), then the moments restart
    m = opt.state[p]["exp_avg"]
    assert 1.0 < m[1, 1] / m[0, 0] < 10.0  # without AdaClip it would be 1000
    assert opt.param_groups[0]["adam_step"] == 1  # fresh moments from this one gradient: v = 0.1 m^2
    assert torch.allclose(opt.state[p]["exp_avg_sq"], (1 - 0.999) / (1 - 0.9) ** 2 * m**2)


FRUGAL_SHAPES = {"w1": (5, 3), "w2": (4, 4), "w3": (3, 6), "w4": (6, 2), "b": (4,)}


@pytest.mark.parametrize("projection,order", [("block", "descending"), ("block", "ascending"), ("svd", "descending")])
def test_frugal_matches_the_papers_algorithm(projection, order):
    mod = module("frugal")
    kw = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.1, "density": 0.5, "update_gap": 3,
          "projection": projection, "block_order": order, "state_free_lr_scale": 0.5}
    names = tuple(k for k in FRUGAL_SHAPES if k != "b")
    got, _ = run_torch(lambda g: mod.Frugal(g, **kw), [(names, {"use_matrix": True}), (("b",), {})],
                       shapes=FRUGAL_SHAPES)
    want = frugal_reference(order=order, density=0.5, gap=3, b1=0.9, b2=0.999, eps=1e-8, wd=0.1, free_scale=0.5,
                            projection=projection, shapes=FRUGAL_SHAPES)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-9, atol=1e-12, err_msg=k)


def test_frugal_keeps_adam_state_only_in_the_active_subspace():
    mod = module("frugal")
    names = tuple(k for k in FRUGAL_SHAPES if k != "b")
    _, opt = run_torch(lambda g: mod.Frugal(g, density=0.25, update_gap=3), [(names, {"use_matrix": True})],
                       shapes={k: FRUGAL_SHAPES[k] for k in names}, steps=4)
    stateful = [p for p in opt.param_groups[0]["params"] if "exp_avg" in opt.state[p]]
    assert len(stateful) == 1 and stateful[0] is opt.param_groups[0]["params"][2]  # descending: w4, then w3
    _, opt = run_torch(lambda g: mod.Frugal(g, density=0.5, projection="svd"), [(("w3",), {"use_matrix": True})],
                       shapes={"w3": (3, 6)}, steps=1)
    assert opt.state[opt.param_groups[0]["params"][0]]["exp_avg"].shape == (2, 6)  # rank 2 of the short side


ROUND_TRIP = {
    "muon": lambda mod: lambda g: mod.MatrixMomentum(g, direction=lambda M: mod.newton_schulz(M, 5)),
    "auon": lambda mod: lambda g: mod.MatrixMomentum(g, direction=mod.cosh_rms_direction),
    "stable_spam": lambda mod: lambda g: mod.StableSPAM(g, weight_decay=0.1, reset_interval=3),
    "frugal": lambda mod: lambda g: mod.Frugal(g, density=0.5, update_gap=2, block_order="random"),
}


@pytest.mark.parametrize("name", sorted(ROUND_TRIP))
def test_state_dict_round_trip_continues_identically(name):
    factory = ROUND_TRIP[name](module(name))
    spec = [(MATRICES, {"use_matrix": True, "weight_decay": 0.05}), (("b",), {"use_matrix": False})]
    straight, _ = run_torch(factory, spec)
    half, opt = run_torch(factory, spec, steps=4)
    saved = opt.state_dict()
    params = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in half.items()}
    resumed = factory([{"params": [params[n] for n in names], **extra} for names, extra in spec])
    resumed.load_state_dict(saved)
    for step in range(4, STEPS):
        for group in resumed.param_groups:
            group["lr"] = LRS[step]
        for k, g in grads_for(step).items():
            params[k].grad = torch.tensor(g)
        resumed.step()
    for k in straight:
        assert np.array_equal(params[k].detach().numpy(), straight[k]), k
