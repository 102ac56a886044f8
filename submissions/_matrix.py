"""Shared by the matrix optimizers (muon, auon, frugal, mkor): which parameters are hidden weight
matrices, the Newton-Schulz iteration, and an optimizer that applies a matrix update rule to the
hidden matrices and AdamW to everything else.

Not a submission (the leading underscore keeps it out of `algobench list submissions`).

Hidden matrix: a parameter of kind `ParamKind.WEIGHT` (from `workload.param_types`) with two or more
dimensions that is not the output head. Embeddings, norms, biases and the head are not hidden: the
Muon authors optimize them with AdamW. The head is found as the weight of the model's last
`nn.Linear` (in registration order, nanoGPT's `lm_head`); a head tied to the input embedding is an
`EMBEDDING` already.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable

import torch
from torch import nn

from algobench.workload import ParamKind

# Keller Jordan's quintic Newton-Schulz coefficients (KellerJordan/Muon, muon.py).
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def _kind(workload, name: str) -> ParamKind:
    """The workload's kind for a parameter name, without the prefixes torch.compile and DDP add."""
    for prefix in ("_orig_mod.", "module."):
        while name.startswith(prefix):
            name = name[len(prefix):]
    return workload.param_types.get(name, ParamKind.WEIGHT)


def output_head(model: nn.Module) -> nn.Parameter | None:
    """The weight of the model's last nn.Linear: the output head in nanoGPT-style models."""
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module.weight
    return last


def hidden_matrices(model: nn.Module, workload) -> tuple[list[nn.Parameter], list[tuple[str, nn.Parameter]]]:
    """(hidden weight matrices, [(name, parameter)] of the rest), trainable parameters only."""
    head = output_head(model)
    matrices, rest = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        kind = _kind(workload, name)
        if kind == ParamKind.WEIGHT and p.ndim >= 2 and p is not head:
            matrices.append(p)
        else:
            rest.append((name, p))
    return matrices, rest


def split_groups(model: nn.Module, workload, *, weight_decay: float, adam_weight_decay: float,
                 adam_lr_scale: float) -> list[dict]:
    """Param groups: hidden matrices (`use_matrix=True`), then AdamW groups for the rest, with decay
    on embeddings and head weights, none on biases and norms. `lr_scale` is what the harness
    multiplies the scheduled lr by for a group (AdamW's lr relative to the matrix lr)."""
    matrices, rest = hidden_matrices(model, workload)
    decay, no_decay = [], []
    for name, p in rest:
        kind = _kind(workload, name)
        (decay if kind in (ParamKind.WEIGHT, ParamKind.EMBEDDING) else no_decay).append(p)
    groups = [{"params": matrices, "use_matrix": True, "weight_decay": weight_decay}]
    for params, wd in ((decay, adam_weight_decay), (no_decay, 0.0)):
        if params:
            groups.append({"params": params, "use_matrix": False, "weight_decay": wd, "lr_scale": adam_lr_scale})
    return groups


def newton_schulz(G: torch.Tensor, steps: int, eps: float = 1e-7) -> torch.Tensor:
    """Approximately U V^T for G = U S V^T, batched over leading dims (Keller Jordan's quintic
    iteration). Runs in bfloat16 on GPU as the reference code does, in G's dtype elsewhere."""
    a, b, c = NS_COEFFICIENTS
    X = G.to(torch.bfloat16) if G.is_cuda else G
    transposed = G.size(-2) > G.size(-1)
    if transposed:
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + eps)  # spectral norm <= 1
    for _ in range(steps):
        A = X @ X.mT
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    return (X.mT if transposed else X).to(G.dtype)


def as_matrix(t: torch.Tensor) -> torch.Tensor:
    """2-D view: conv filters (out, in, kh, kw) become (out, in * kh * kw)."""
    return t if t.ndim == 2 else t.reshape(len(t), -1)


def by_shape(tensors: list[torch.Tensor]) -> dict[tuple[int, ...], list[int]]:
    """Indices of `tensors` grouped by 2-D shape, so that same-shaped matrices are one batched call."""
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, t in enumerate(tensors):
        groups[tuple(as_matrix(t).shape)].append(i)
    return groups


def adamw_step(params: list[torch.Tensor], grads: list[torch.Tensor], exp_avg: list[torch.Tensor],
               exp_avg_sq: list[torch.Tensor], *, step: int, lr: float, betas: tuple[float, float],
               eps: float, weight_decay: float) -> None:
    """Keller Jordan's `adam_update` with decoupled decay: bias-corrected moments, eps after sqrt."""
    beta1, beta2 = betas
    torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sq, beta2)
    torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - beta2)
    denom = torch._foreach_sqrt(exp_avg_sq)
    torch._foreach_div_(denom, math.sqrt(1 - beta2**step))
    torch._foreach_add_(denom, eps)
    if weight_decay:
        torch._foreach_mul_(params, 1 - lr * weight_decay)
    torch._foreach_addcdiv_(params, exp_avg, denom, value=-lr / (1 - beta1**step))


class MatrixMomentum(torch.optim.Optimizer):
    """Nesterov momentum on hidden matrices turned into an update by `direction` (batched over
    same-shaped matrices), scaled by sqrt(max(1, rows / cols)); AdamW on the other groups.

    direction: (k, rows, cols) momentum matrices -> (k, rows, cols) update directions.
    zero_missing_grads: a parameter whose gradient is None steps with a zero gradient (its momentum
    decays and is still applied, weight decay applies: KellerJordan/Muon's `p.grad = zeros`);
    False skips it (torch.optim's convention).
    """

    def __init__(self, params, *, direction: Callable[[torch.Tensor], torch.Tensor], lr: float = 0.02,
                 momentum: float = 0.95, nesterov: bool = True, betas: tuple[float, float] = (0.9, 0.95),
                 eps: float = 1e-10, weight_decay: float = 0.0, zero_missing_grads: bool = False) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1): {momentum}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "nesterov": nesterov, "betas": betas, "eps": eps,
                                      "weight_decay": weight_decay, "use_matrix": True})
        self.direction = direction
        self.zero_missing_grads = zero_missing_grads

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None or self.zero_missing_grads]
            if not params:
                continue
            grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
            group["step"] = group.get("step", 0) + 1
            if group["use_matrix"]:
                self._matrix_step(group, params, grads)
            else:
                for p in params:
                    if not self.state[p]:
                        self.state[p]["exp_avg"] = torch.zeros_like(p)
                        self.state[p]["exp_avg_sq"] = torch.zeros_like(p)
                adamw_step(params, grads, [self.state[p]["exp_avg"] for p in params],
                           [self.state[p]["exp_avg_sq"] for p in params], step=group["step"], lr=group["lr"],
                           betas=group["betas"], eps=group["eps"], weight_decay=group["weight_decay"])
        return loss

    def _matrix_step(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        beta, lr, wd = group["momentum"], group["lr"], group["weight_decay"]
        for p in params:
            if not self.state[p]:
                self.state[p]["momentum_buffer"] = torch.zeros_like(p)
        bufs = [self.state[p]["momentum_buffer"] for p in params]
        torch._foreach_lerp_(bufs, grads, 1 - beta)
        updates = torch._foreach_lerp(grads, bufs, beta) if group["nesterov"] else bufs
        if wd:
            torch._foreach_mul_(params, 1 - lr * wd)
        for (rows, cols), idx in by_shape(updates).items():
            directions = self.direction(torch.stack([as_matrix(updates[i]) for i in idx]))
            scale = math.sqrt(max(1.0, rows / cols))
            torch._foreach_add_([params[i] for i in idx],
                                [d.view_as(params[i]) for d, i in zip(directions.unbind(0), idx)],
                                alpha=-lr * scale)
