"""Muon and AuON as their authors released them, in the structure of their `step`, for the
reference tests; the authors' bfloat16 cast is replaced by `dtype` (float64 in the tests, so that
the comparison is exact). Nothing here imports algobench or the submissions.
"""

from __future__ import annotations

import math

import torch
from torch.optim import Optimizer


def zeropower_via_newtonschulz5(G: torch.Tensor, steps: int, dtype=torch.bfloat16) -> torch.Tensor:
    """KellerJordan/Muon muon.py (`X = G.bfloat16()` there)."""
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = G.to(dtype)
    if G.size(-2) > G.size(-1):
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        A = X @ X.mT
        B = b * A + c * A @ A
        X = a * X + B @ X
    if G.size(-2) > G.size(-1):
        X = X.mT
    return X


def muon_update(grad, momentum, beta=0.95, ns_steps=5, nesterov=True, dtype=torch.bfloat16):
    """KellerJordan/Muon muon.py `muon_update`: the aspect-ratio scale is taken from `grad`'s last
    two dims (for a 4-D conv filter: kh / kw), after the flattening for Newton-Schulz."""
    momentum.lerp_(grad, 1 - beta)
    update = grad.lerp_(momentum, beta) if nesterov else momentum
    if update.ndim == 4:
        update = update.view(len(update), -1)
    update = zeropower_via_newtonschulz5(update, steps=ns_steps, dtype=dtype).to(grad.dtype)
    update *= max(1, grad.size(-2) / grad.size(-1)) ** 0.5
    return update


def adam_update(grad, buf1, buf2, step, betas, eps):
    """KellerJordan/Muon muon.py `adam_update`."""
    buf1.lerp_(grad, 1 - betas[0])
    buf2.lerp_(grad.square(), 1 - betas[1])
    buf1c = buf1 / (1 - betas[0] ** step)
    buf2c = buf2 / (1 - betas[1] ** step)
    return buf1c / (buf2c.sqrt() + eps)


class SingleDeviceMuonWithAuxAdam(Optimizer):
    """KellerJordan/Muon muon.py `SingleDeviceMuonWithAuxAdam.step` (groups with `use_muon`); a
    None gradient becomes zeros ("Force synchronization") in both kinds of group."""

    def __init__(self, param_groups, nesterov=True, ns_steps=5, dtype=torch.bfloat16):
        super().__init__(param_groups, {})
        self.nesterov, self.ns_steps, self.dtype = nesterov, ns_steps, dtype

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                state = self.state[p]
                if group["use_muon"]:
                    if len(state) == 0:
                        state["momentum_buffer"] = torch.zeros_like(p)
                    update = muon_update(p.grad, state["momentum_buffer"], beta=group["momentum"],
                                         ns_steps=self.ns_steps, nesterov=self.nesterov, dtype=self.dtype)
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                    p.add_(update.reshape(p.shape), alpha=-group["lr"])
                else:
                    if len(state) == 0:
                        state["exp_avg"], state["exp_avg_sq"], state["step"] = torch.zeros_like(p), torch.zeros_like(p), 0
                    state["step"] += 1
                    update = adam_update(p.grad, state["exp_avg"], state["exp_avg_sq"], state["step"], group["betas"],
                                         group["eps"])
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                    p.add_(update, alpha=-group["lr"])


def auon_direction(G: torch.Tensor, dtype=torch.bfloat16) -> torch.Tensor:
    """ryyzn9/AuON Auon_Adam_train.py `zeropower_via_newtonschulz5` (its Newton-Schulz is unused):
    X = G / (||G|| + 1e-7), then X / (RMS(cosh X) + 1e-8)."""
    X = G.to(dtype, copy=True)  # bfloat16() copies: the momentum buffer must not be divided in place
    X /= X.norm() + 1e-7
    x = torch.cosh(X)
    rms = torch.sqrt(torch.mean(x.square()))
    return X * 1 / (rms + 1e-8)


class AuonScript(Optimizer):
    """ryyzn9/AuON Auon_Adam_train.py class `auon`: no weight decay, None gradients skipped, the
    aspect-ratio scale from the parameter's last two dims."""

    def __init__(self, params, lr=0.02, momentum=0.95, nesterov=True, dtype=torch.bfloat16):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov))
        self.dtype = dtype

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g, state = p.grad, self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(g)
                buf = state["momentum_buffer"]
                buf.lerp_(g, 1 - group["momentum"])
                g = g.lerp_(buf, group["momentum"]) if group["nesterov"] else buf
                g = auon_direction(g, self.dtype).to(p.dtype)
                p.add_(g.reshape(p.shape), alpha=-group["lr"] * max(1, p.size(-2) / p.size(-1)) ** 0.5)


def scale_of_flattened(shape: tuple[int, ...]) -> float:
    """What algobench scales by: sqrt(max(1, rows / cols)) of the (out, in * kh * kw) matrix."""
    rows, cols = shape[0], math.prod(shape[1:])
    return max(1.0, rows / cols) ** 0.5
