"""The full-form submissions, Sophia-G and MKOR, against their papers' equations written out again in
numpy float64, on a small classifier workload whose gradients are known in closed form."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from algobench import submission as submission_lib
from algobench.schedules import warmup_cosine
from algobench.specs import Preset, Target
from algobench.frameworks.torch import TorchBackend, TorchWorkload
from workloads import WORKLOADS

N, D, H, C = 24, 4, 5, 3  # examples, inputs, hidden units, classes
STEPS = 7


@dataclass
class Classifier(TorchWorkload):
    """Softmax regression (hidden=0) or a two-layer linear net, in float64, on fixed random data."""

    hidden: int = 0

    def build_model(self) -> nn.Module:
        if self.hidden:
            return nn.Sequential(nn.Linear(D, self.hidden), nn.Linear(self.hidden, C)).double()
        return nn.Linear(D, C, bias=False).double()

    def model_fn(self, params, batch):
        return params(batch["inputs"])

    def loss_fn(self, label_batch, logits_batch, mask_batch=None, label_smoothing=0.0):
        per = F.cross_entropy(logits_batch.reshape(-1, C), label_batch.reshape(-1), reduction="none")
        return {"summed": per.sum(), "n_valid_examples": torch.tensor(per.numel()), "per_example": per}


def workload(hidden: int = 0) -> Classifier:
    preset = Preset(target=Target(metric="val_loss", value=0.1, mode="min"), budget_s=10, eval_period_s=1,
                    step_hint=10, batch_size=N, how_target_was_set="test problem")
    wl = Classifier(name="classifier", size="smoke", preset=preset, backend=TorchBackend.choose("cpu", "fp32", "off"),
                    data_dir=Path("."), hidden=hidden)
    return wl


def batch(step: int) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(50 + step)
    return {"inputs": torch.tensor(rng.normal(size=(N, D)) * 2), "targets": torch.tensor(rng.integers(0, C, N))}


def rng_for(step: int) -> np.ndarray:
    return np.array([11, step], dtype=np.int32)


def run_full(name: str, hp: dict, wl: Classifier, *, steps=range(STEPS), model=None, state=None):
    sub = submission_lib.load(name)
    hparams = submission_lib.make_hparams(sub.hparams(hp))
    if model is None:
        model = wl.init_model(seed=0)
        state = sub.init_optimizer_state(workload=wl, model_params=model, model_state=None, hyperparameters=hparams,
                                         rng=rng_for(0))
    for step in steps:
        state, model, _, _ = sub.update_params(
            workload=wl, current_param_container=model, current_params_types=wl.param_types, model_state=None,
            hyperparameters=hparams, batch=batch(step), loss_type="cross_entropy", optimizer_state=state,
            eval_results=[], global_step=step, rng=rng_for(step))
    return model, state, hparams


def lr_at(step: int, hp) -> float:
    warmup = max(int(hp.warmup_frac * 10), 1)
    return warmup_cosine(step, peak_lr=hp.learning_rate, warmup_steps=warmup, decay_steps=10 - warmup)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def one_hot(y: np.ndarray) -> np.ndarray:
    return np.eye(C)[y]


# --- Sophia-G -------------------------------------------------------------------------------------

SOPHIA_HP = {"learning_rate": 0.05, "beta1": 0.9, "beta2": 0.95, "rho": 0.04, "eps": 1e-15, "weight_decay": 0.1,
                 "hessian_interval": 3, "warmup_frac": 0.2, "grad_clip": 0.0}


def sophia_reference(W: np.ndarray, hp, draw) -> np.ndarray:
    """Liu et al. (2023), Algorithms 2 and 3: h from B g_hat^2 of sampled labels every k steps."""
    m, h = np.zeros_like(W), np.zeros_like(W)
    for t in range(STEPS):
        b = batch(t)
        X, y = b["inputs"].numpy(), b["targets"].numpy()
        P = softmax(X @ W.T)
        g = (P - one_hot(y)).T @ X / N
        if t % hp.hessian_interval == 0:
            g_hat = (P - one_hot(draw(t, X @ W.T))).T @ X / N
            h = hp.beta2 * h + (1 - hp.beta2) * N * g_hat**2
        lr = lr_at(t, hp)
        W = W * (1 - lr * hp.weight_decay)
        m = hp.beta1 * m + (1 - hp.beta1) * g
        W = W - lr * np.sign(m) * np.minimum(np.abs(m) / (hp.rho * h + hp.eps), 1.0)
    return W


def test_sophia_full_form_matches_the_papers_algorithm():
    mod = submission_lib.load("sophia_g").module
    wl = workload()
    W0 = wl.init_model(seed=0).weight.detach().numpy().copy()
    model, _, hp = run_full("sophia_g", SOPHIA_HP, wl)
    drawn = []

    def draw(t: int, logits: np.ndarray) -> np.ndarray:
        """The submission's documented rule: y_hat ~ softmax(logits), generator seeded by the step's
        rng as rng[0] * 1_000_003 + rng[1] (the sampler itself is checked statistically below)."""
        rng = rng_for(t)
        gen = torch.Generator().manual_seed(int(rng[0]) * 1_000_003 + int(rng[1]))
        drawn.append(t)
        return mod.sample_labels(torch.tensor(logits), gen).numpy()

    want = sophia_reference(W0, hp, draw)
    np.testing.assert_allclose(model.weight.detach().numpy(), want, rtol=1e-10, atol=1e-12)
    assert drawn == [0, 3, 6]


def test_sample_labels_follow_the_models_distribution():
    mod = submission_lib.load("sophia_g").module
    logits = torch.tensor([[2.0, 0.0, -1.0]]).repeat(30_000, 1)
    labels = mod.sample_labels(logits.view(100, 300, 3), torch.Generator().manual_seed(0))
    assert labels.shape == (100, 300)
    freq = torch.bincount(labels.flatten(), minlength=3).double() / labels.numel()
    assert torch.allclose(freq, torch.softmax(logits[0].double(), 0), atol=0.01)


def test_sophia_clips_each_coordinate_to_lr():
    mod = submission_lib.load("sophia_g").module
    p = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    opt = mod.SophiaG([p], lr=0.1, betas=(0.0, 0.5), rho=1.0, weight_decay=0.0)
    opt.update_hessian([torch.tensor([1.0, 1.0, 0.0, 10.0], dtype=torch.float64)], batch_size=2)
    p.grad = torch.tensor([0.5, -4.0, 1e-3, 30.0], dtype=torch.float64)
    opt.step()  # h = [1, 1, 0, 100]: ratios 0.5, 4 -> 1, inf -> 1, 0.3
    assert torch.allclose(p.detach(), torch.tensor([-0.05, 0.1, -0.1, -0.03], dtype=torch.float64))


# --- MKOR -------------------------------------------------------------------------------------------

MKOR_HP = {"learning_rate": 0.1, "backend": "sgd", "momentum": 0.9, "weight_decay": 0.05, "inv_freq": 2,
           "reset_threshold": 0.9, "clip_value": 2.5, "hybrid_window": 0, "warmup_frac": 0.2, "grad_clip": 0.0}


def sherman_morrison_ref(P: np.ndarray, v: np.ndarray) -> np.ndarray:
    return P - np.outer(P @ v, v @ P) / (1 + v @ P @ v)


def mkor_reference(params: dict[str, np.ndarray], hp) -> dict[str, np.ndarray]:
    """Mozaffari et al. (2023), Algorithm 1 with the package's conventions, layer 1 preconditioned
    (layer 2 is the head), then torch's SGD with momentum and L2 decay on the weights."""
    W1, b1, W2, b2 = (params[k].copy() for k in ("0.weight", "0.bias", "1.weight", "1.bias"))
    A, G, a_reset, g_reset = np.eye(D + 1), np.eye(H), True, True
    buf = {}
    c = hp.clip_value
    for t in range(STEPS):
        b = batch(t)
        X, y = b["inputs"].numpy(), b["targets"].numpy()
        hid = X @ W1.T + b1
        dz = (softmax(hid @ W2.T + b2) - one_hot(y)) / N
        dh = dz @ W2
        grads = {"W1": dh.T @ X, "b1": dh.sum(0), "W2": dz.T @ hid, "b2": dz.sum(0)}
        if t % hp.inv_freq == 0:
            a = np.append(np.clip(X, -c, c).mean(0), 1.0)
            g = np.clip(N * dh, -c, c).mean(0)
            # the package: A first, then G; a reset sets I, an update past the threshold sets both flags
            if a_reset:
                A, a_reset = np.eye(D + 1), False
            else:
                A = sherman_morrison_ref(0.95 * A + 0.05 * np.eye(D + 1), a)
                if np.abs(A).max() > hp.reset_threshold:
                    a_reset = g_reset = True
            if g_reset:
                G, g_reset = np.eye(H), False
            else:
                G = sherman_morrison_ref(0.95 * G + 0.05 * np.eye(H), g)
                if np.abs(G).max() > hp.reset_threshold:
                    a_reset = g_reset = True
        U = G @ np.hstack([grads["W1"], grads["b1"][:, None]]) @ A
        fix = (np.linalg.norm(grads["W1"]) + np.linalg.norm(grads["b1"])) / (np.linalg.norm(U[:, :-1])
                                                                                + np.linalg.norm(U[:, -1]))
        grads["W1"], grads["b1"] = U[:, :-1] * fix, U[:, -1] * fix
        lr = lr_at(t, hp)
        for name, p in (("W1", W1), ("b1", b1), ("W2", W2), ("b2", b2)):
            d = grads[name] + (hp.weight_decay * p if name.startswith("W") else 0)
            buf[name] = d if t == 0 else hp.momentum * buf[name] + d
            p -= lr * buf[name]
    return {"0.weight": W1, "0.bias": b1, "1.weight": W2, "1.bias": b2}


def test_mkor_matches_the_papers_algorithm_with_resets():
    wl = workload(hidden=H)
    params0 = {k: v.detach().numpy().copy() for k, v in wl.init_model(seed=0).state_dict().items()}
    model, state, hp = run_full("mkor", MKOR_HP, wl)
    want = mkor_reference(params0, hp)
    for k, v in model.state_dict().items():
        np.testing.assert_allclose(v.numpy(), want[k], rtol=1e-9, atol=1e-12, err_msg=k)
    assert len(state["optimizer"].layers) == 1  # the head is not preconditioned


def test_mkor_h_falls_back_to_first_order_when_the_loss_stalls():
    wl = workload(hidden=H)
    hp = {**MKOR_HP, "hybrid_window": 2, "hybrid_min_decrease": 0.05}
    model, state, _ = run_full("mkor", hp, wl, steps=range(0))
    mkor = state["optimizer"]
    for loss in (5.0, 5.0, 4.0, 4.0):  # -20% from one window to the next: keep going
        mkor.after_step(torch.tensor(loss))
    assert not mkor.first_order
    for loss in (3.9, 3.9):  # -2.5% < 5%: switch for good
        mkor.after_step(torch.tensor(loss))
    assert mkor.first_order and not mkor.refresh_due
    before = [f.clone() for f in mkor.a_inv + mkor.g_inv]
    run_full("mkor", hp, wl, steps=range(6, 9), model=model, state=state)
    assert all(torch.equal(a, b) for a, b in zip(before, mkor.a_inv + mkor.g_inv))  # no more refreshes


def test_mkor_preconditions_the_gpt2_block_layers_only(tmp_path: Path):
    spec = WORKLOADS.get("gpt2")
    wl = spec.build_torch(preset=spec.presets["smoke"], size="smoke", data_dir=tmp_path,
                          backend=TorchBackend.choose("cpu"))
    model = wl.init_model(seed=0)
    sub = submission_lib.load("mkor")
    state = sub.init_optimizer_state(workload=wl, model_params=model, model_state=None,
                                     hyperparameters=submission_lib.make_hparams(sub.defaults), rng=rng_for(0))
    layers = state["optimizer"].layers
    assert len(layers) == 12 and model.lm_head not in layers


@pytest.mark.parametrize("name,hp,hidden", [("sophia_g", SOPHIA_HP, 0),
                                            ("mkor", {**MKOR_HP, "hybrid_window": 2, "backend": "adamw"}, H)])
def test_full_form_state_round_trip_continues_identically(name, hp, hidden):
    wl = workload(hidden)
    straight, _, _ = run_full(name, hp, wl)
    model, state, _ = run_full(name, hp, wl, steps=range(4))
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    saved_opt = state["optimizer"].state_dict()
    sub = submission_lib.load(name)
    hparams = submission_lib.make_hparams(sub.hparams(hp))
    resumed_model = wl.init_model(seed=1)
    resumed_model.load_state_dict(saved)
    resumed = sub.init_optimizer_state(workload=wl, model_params=resumed_model, model_state=None,
                                       hyperparameters=hparams, rng=rng_for(0))
    resumed["optimizer"].load_state_dict(saved_opt)
    resumed_model, _, _ = run_full(name, hp, wl, steps=range(4, STEPS), model=resumed_model, state=resumed)
    for k, v in straight.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[k], v), k


DDP_WORKER = '''
import json, os, sys
import torch, torch.distributed as dist
sys.path.insert(0, os.getcwd())
from tests.test_library_advanced_full import run_ranked
dist.init_process_group("gloo")
model = run_ranked(sys.argv[1], dist.get_rank(), dist.get_world_size())
json.dump({k: v.tolist() for k, v in model.state_dict().items()}, open(sys.argv[2], "w"))
'''


def run_ranked(name: str, rank: int, world: int) -> nn.Module:
    """Seven steps on this rank's slice of each batch, the model DDP-wrapped when world > 1."""
    hp = {"sophia_g": SOPHIA_HP, "mkor": {**MKOR_HP, "hybrid_window": 2}}[name]
    wl = workload(hidden=0 if name == "sophia_g" else H)
    sub = submission_lib.load(name)
    hparams = submission_lib.make_hparams(sub.hparams(hp))
    model = wl.init_model(seed=0)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    state = sub.init_optimizer_state(workload=wl, model_params=model, model_state=None, hyperparameters=hparams,
                                     rng=rng_for(0))
    rows = N // world
    for step in range(STEPS):
        part = {k: v[rank * rows:(rank + 1) * rows] for k, v in batch(step).items()}
        state, model, _, _ = sub.update_params(
            workload=wl, current_param_container=model, current_params_types=wl.param_types, model_state=None,
            hyperparameters=hparams, batch=part, loss_type="cross_entropy", optimizer_state=state, eval_results=[],
            global_step=step, rng=rng_for(step))
    return model.module if world > 1 else model


@pytest.mark.parametrize("name", ["sophia_g", "mkor"])
@pytest.mark.xdist_group("exclusive")
def test_ddp_ranks_stay_identical(tmp_path: Path, name: str):
    """Under DDP the ranks must take identical steps: Sophia averages g_hat (torch.autograd.grad
    bypasses DDP), MKOR averages its rank-1 vectors and window losses. MKOR on 2 ranks equals one
    process on the whole batch; Sophia's labels are drawn per rank, so only the ranks agree."""
    root = Path(__file__).resolve().parents[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    procs = [subprocess.Popen([sys.executable, "-c", DDP_WORKER, name, str(tmp_path / f"{r}.json")], cwd=root,
                              env={**env, "RANK": str(r)}, stderr=subprocess.PIPE, text=True) for r in range(2)]
    errors = [p.communicate(timeout=240)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    ranks = [json.loads((tmp_path / f"{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]
    if name == "mkor":
        single = run_ranked(name, 0, 1).state_dict()
        for k, v in single.items():
            np.testing.assert_allclose(np.array(ranks[0][k]), v.numpy(), rtol=1e-12, atol=1e-14, err_msg=k)
