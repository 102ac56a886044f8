"""Every optimizer of the submissions library against its paper's equations (tests/library_refs.py),
several steps with weight decay and a changing lr, and through a state_dict round trip mid-run.

The problem: four tensors, a weight whose gradients are orthogonal to each of its rows (what a
scale-invariant weight sees: AdamP/SGDP's channel projection), one whose gradient is orthogonal to
it as a whole (their layer projection), a plain 3-d weight, and a bias without weight decay.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

from algobench import submission as submission_lib
from algobench.workload import ParamKind
from tests import library_refs as refs

SHAPES = {"w_channel": (4, 6), "w_layer": (3, 5), "w_plain": (2, 3, 2), "bias": (6,)}
KINDS = {name: ParamKind.BIAS if name == "bias" else ParamKind.WEIGHT for name in SHAPES}
DECAYED = {name for name, kind in KINDS.items() if kind is ParamKind.WEIGHT}
LR_SHAPE = [1.0, 0.8, 1.2, 0.5, 0.9, 0.3, 0.7, 0.6]  # a schedule that rises and falls


def grad_fn(step: int, name: str, theta: np.ndarray) -> np.ndarray:
    """A deterministic gradient at `theta` for `step`."""
    raw = np.random.default_rng([step, sum(map(ord, name))]).normal(size=theta.shape)
    if name == "w_channel":  # orthogonal to every row
        rows, r = theta.reshape(theta.shape[0], -1), raw.reshape(theta.shape[0], -1)
        return (r - (np.sum(r * rows, axis=1) / np.sum(rows * rows, axis=1))[:, None] * rows).reshape(theta.shape)
    if name == "w_layer":  # orthogonal to the tensor as a whole only
        return raw - np.sum(raw * theta) / np.sum(theta * theta) * theta
    return raw


def initial_theta() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(42)
    return {name: rng.normal(size=shape) for name, shape in SHAPES.items()}


class Model(torch.nn.Module):
    def __init__(self, theta: dict[str, np.ndarray], dtype: torch.dtype) -> None:
        super().__init__()
        for name, value in theta.items():
            self.register_parameter(name, torch.nn.Parameter(torch.tensor(value, dtype=dtype)))


@dataclass
class FakeWorkload:
    """What make_optimizer reads from a workload: parameter kinds and the step hint."""

    param_types: dict = field(default_factory=lambda: dict(KINDS))
    step_hint: int = 8


@dataclass(frozen=True)
class Case:
    name: str
    overrides: dict[str, Any]
    base_lr: float
    reference: Callable[..., Any]
    ref_kwargs: dict[str, Any]
    dtype: torch.dtype = torch.float64
    tol: float = 1e-10
    build: Callable[..., Any] | None = None  # (model, hparams) -> optimizer, default: the submission's


def _eight_bit(model, hparams):  # small blocks so that the test tensors are quantized, 3 blocks each
    from algobench.workload import param_groups

    module = submission_lib.load("adamw_8bit").module
    return module.AdamW8bit(param_groups(model, FakeWorkload(), weight_decay=hparams.weight_decay),
                            lr=hparams.learning_rate, betas=(hparams.beta1, hparams.beta2), eps=hparams.eps,
                            block_size=8, min_8bit_size=16)


CASES = [
    Case("sgd_nesterov", {"one_minus_beta1": 0.1, "weight_decay": 0.05}, 0.1, refs.sgd_momentum,
         dict(mu=0.9, wd=0.05, nesterov=True)),
    Case("heavy_ball", {"one_minus_beta1": 0.2, "weight_decay": 0.05}, 0.1, refs.sgd_momentum,
         dict(mu=0.8, wd=0.05, nesterov=False)),
    Case("adabelief", {"eps": 1e-3, "weight_decay": 0.1, "rectify": True}, 0.01, refs.adabelief,
         dict(b1=0.9, b2=0.9, eps=1e-3, wd=0.1, rectify=True)),
    Case("adabelief", {"eps": 1e-3, "weight_decay": 0.1, "rectify": False}, 0.01, refs.adabelief,
         dict(b1=0.9, b2=0.9, eps=1e-3, wd=0.1, rectify=False)),
    Case("adamp", {"eps": 1e-3, "weight_decay": 0.1, "nesterov": False}, 0.01, refs.adamp,
         dict(b1=0.9, b2=0.99, eps=1e-3, wd=0.1, delta=0.1, wd_ratio=0.1, nesterov=False)),
    Case("adamp", {"eps": 1e-3, "weight_decay": 0.1, "nesterov": True}, 0.01, refs.adamp,
         dict(b1=0.9, b2=0.99, eps=1e-3, wd=0.1, delta=0.1, wd_ratio=0.1, nesterov=True)),
    Case("sgdp", {"weight_decay": 0.05, "nesterov": True}, 0.05, refs.sgdp,
         dict(mu=0.9, wd=0.05, nesterov=True, eps=1e-8, delta=0.1, wd_ratio=0.1)),
    Case("sgdp", {"weight_decay": 0.05, "nesterov": False}, 0.05, refs.sgdp,
         dict(mu=0.9, wd=0.05, nesterov=False, eps=1e-8, delta=0.1, wd_ratio=0.1)),
    Case("diffgrad", {"eps": 1e-3, "weight_decay": 0.1}, 0.01, refs.diffgrad,
         dict(b1=0.9, b2=0.99, eps=1e-3, wd=0.1)),
    Case("lamb", {"eps": 1e-3, "weight_decay": 0.1}, 0.01, refs.lamb, dict(b1=0.9, b2=0.99, eps=1e-3, wd=0.1)),
    Case("lion", {"weight_decay": 0.5}, 0.01, refs.lion, dict(b1=0.95, b2=0.98, wd=0.5)),
    Case("sgd_sai", {"eps": 1e-3, "weight_decay": 0.1}, 0.001, refs.sgd_sai, dict(mu=0.9, eps=1e-3, wd=0.1)),
    Case("schedule_free_adamw", {"eps": 1e-3, "weight_decay": 0.1, "warmup_factor": 0.375}, 0.01,
         refs.schedule_free_adamw,
         dict(b1=0.9, b2=0.9955, eps=1e-3, wd=0.1, warmup_steps=3, r=0.75, weight_lr_power=2.0)),
    Case("adamw_8bit", {"eps": 1e-3, "weight_decay": 0.1}, 0.01, refs.adamw_8bit,
         dict(b1=0.9, b2=0.95, eps=1e-3, wd=0.1, block=8, min_8bit=16), dtype=torch.float32, tol=2e-5,
         build=_eight_bit),
]
BETA2_OVERRIDES = {"adabelief": 0.9, "adamp": 0.99, "diffgrad": 0.99, "lamb": 0.99}


def make(case: Case, theta: dict[str, np.ndarray]):
    """(model, optimizer, hparams) built the way the harness builds them."""
    sub = submission_lib.load(case.name)
    values = {**sub.defaults, **case.overrides}
    if case.name in BETA2_OVERRIDES:
        values["beta2"] = BETA2_OVERRIDES[case.name]
    hparams = submission_lib.make_hparams(values)
    model = Model(theta, case.dtype)
    if case.build is not None:
        return model, case.build(model, hparams), hparams
    state = sub.init_optimizer_state(workload=FakeWorkload(), model_params=model, model_state=None,
                                     hyperparameters=hparams, rng=None)
    return model, state["optimizer"], hparams


def run_steps(case: Case, model, optimizer, steps: range) -> None:
    """Set each group's lr from the schedule, the gradients at the current point, and step."""
    for k in steps:
        for group in optimizer.param_groups:
            group["lr"] = case.base_lr * LR_SHAPE[k]
        for name, p in model.named_parameters():
            p.grad = torch.tensor(grad_fn(k, name, p.detach().double().numpy()), dtype=p.dtype)
        optimizer.step()


def case_id(case: Case) -> str:
    flags = [f"{k}={v}" for k, v in case.overrides.items() if isinstance(v, bool)]
    return "-".join([case.name, *flags])


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_update_matches_the_papers_equations(case):
    theta0 = initial_theta()
    model, optimizer, _ = make(case, theta0)
    run_steps(case, model, optimizer, range(len(LR_SHAPE)))
    lrs = [case.base_lr * s for s in LR_SHAPE]
    want = case.reference(theta0, DECAYED, grad_fn, lrs, **case.ref_kwargs)
    if case.name == "schedule_free_adamw":  # params hold y while training, x after eval()
        want_y, want_x = want
        got = {n: p.detach().double().numpy() for n, p in model.named_parameters()}
        for name in SHAPES:
            np.testing.assert_allclose(got[name], want_y[name], rtol=case.tol, atol=case.tol)
        optimizer.eval()
        want = want_x
    for name, p in model.named_parameters():
        got = p.detach().double().numpy()
        assert not np.allclose(got, theta0[name]), f"{name} did not move"
        np.testing.assert_allclose(got, want[name], rtol=case.tol, atol=case.tol, err_msg=f"{case.name}: {name}")


def test_the_problem_exercises_the_projections_and_rectification():
    """The test problem is only worth it if AdamP projects both ways and AdaBelief's rectification
    switches from its SGD-style steps to its Adam-style ones."""
    theta = initial_theta()
    g = {n: grad_fn(0, n, theta[n]) for n in SHAPES}
    u = {n: np.ones_like(theta[n]) for n in SHAPES}
    ratios = {n: refs._project(theta[n], g[n], u[n], delta=0.1, wd_ratio=0.1, eps=1e-8)[1] for n in SHAPES}
    assert ratios == {"w_channel": 0.1, "w_layer": 0.1, "w_plain": 1.0, "bias": 1.0}
    b2 = BETA2_OVERRIDES["adabelief"]
    rho_inf = 2 / (1 - b2) - 1
    rho = [rho_inf - 2 * t * b2**t / (1 - b2**t) for t in range(1, len(LR_SHAPE) + 1)]
    assert rho[0] <= 4 < rho[-1]


@pytest.mark.parametrize("case", [c for c in CASES if c.name != "adabelief" or c.overrides["rectify"]],
                         ids=case_id)
def test_state_dict_round_trip_continues_identically(case):
    theta0 = initial_theta()
    model, optimizer, _ = make(case, theta0)
    run_steps(case, model, optimizer, range(8))
    straight = {n: p.detach().clone() for n, p in model.named_parameters()}

    model, optimizer, _ = make(case, theta0)
    run_steps(case, model, optimizer, range(4))
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    model, optimizer, _ = make(case, theta0)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    run_steps(case, model, optimizer, range(4, 8))
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), straight[name]), f"{case.name}: {name} differs after reload"


def test_eight_bit_state_is_uint8_after_a_reload_and_two_bytes_per_parameter():
    case = next(c for c in CASES if c.name == "adamw_8bit")
    model, optimizer, _ = make(case, initial_theta())
    run_steps(case, model, optimizer, range(2))
    optimizer.load_state_dict(optimizer.state_dict())
    state = optimizer.state[model.w_channel]
    assert state["state1"].dtype == torch.uint8 and state["state2"].dtype == torch.uint8
    assert state["absmax1"].shape == (3,)  # 24 values in blocks of 8
    assert "exp_avg" in optimizer.state[model.bias]  # 6 < min_8bit_size: fp32 moments


def test_dynamic_map_matches_the_papers_data_type():
    module = submission_lib.load("adamw_8bit").module
    for signed in (True, False):
        code = module.dynamic_map(signed=signed).double().numpy()
        np.testing.assert_allclose(code, refs.dynamic_map(signed), rtol=1e-6, atol=0)
        assert len(np.unique(code)) == 256 and code.max() == 1.0 and 0.0 in code
    assert module.dynamic_map(signed=True).min() < -0.99


def test_blockwise_quantization_error_is_relative_to_each_block():
    """A block of tiny values next to a block of large ones keeps its precision: the point of
    block-wise quantization. The dynamic type's error is a few percent of each value's magnitude."""
    module = submission_lib.load("adamw_8bit").module
    x = torch.cat([torch.randn(2048) * 1e-4, torch.randn(2048) * 10.0])
    code = module.dynamic_map(signed=True)
    index, absmax = module.quantize(x, code, block_size=2048, keep_sign=True)
    back = module.dequantize(index, absmax, code, block_size=2048)
    assert index.dtype == torch.uint8 and absmax.shape == (2,)
    assert torch.equal(torch.sign(back), torch.sign(x))
    for block in (slice(0, 2048), slice(2048, 4096)):
        big = x[block].abs() > 0.1 * x[block].abs().max()
        rel = ((back[block] - x[block]).abs() / x[block].abs())[big]
        assert rel.max() < 0.1


def test_schedule_free_swaps_to_x_for_evaluation_and_back():
    case = next(c for c in CASES if c.name == "schedule_free_adamw")
    theta0 = initial_theta()
    model, optimizer, _ = make(case, theta0)
    run_steps(case, model, optimizer, range(3))
    y = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer.eval()
    optimizer.eval()  # idempotent
    assert not torch.allclose(model.w_plain, y["w_plain"])
    with pytest.raises(RuntimeError, match="train"):
        optimizer.step()
    optimizer.train()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), y[name], rtol=1e-12, atol=1e-12)


def test_quantized_momentum_keeps_its_sign():
    """A momentum entry far below its block's absmax rounds to the code 0.0; bitsandbytes moves a
    negative one to the smallest negative code so the update keeps its direction."""
    module = submission_lib.load("adamw_8bit").module
    x = torch.tensor([1.0, -1e-9, 1e-9, -0.5])
    for keep_sign, negative in ((True, True), (False, False)):
        index, absmax = module.quantize(x, module.dynamic_map(signed=True), block_size=4, keep_sign=keep_sign)
        back = module.dequantize(index, absmax, module.dynamic_map(signed=True), block_size=4)
        assert bool(back[1] < 0) is negative and back[2] >= 0 and back[3] < 0
