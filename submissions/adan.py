"""Adan: adaptive Nesterov momentum (Xie et al., 2022), with warmup + cosine decay.

Paper (Algorithm 1, betas as the paper writes them, b_paper = 1 - beta in code):
    m_k = (1 - b1) m_{k-1} + b1 g_k
    v_k = (1 - b2) v_{k-1} + b2 (g_k - g_{k-1})
    n_k = (1 - b3) n_{k-1} + b3 [g_k + (1 - b2)(g_k - g_{k-1})]^2
    theta_{k+1} = (1 + lr * wd)^-1 [theta_k - lr * (m_k + (1 - b2) v_k) / (sqrt(n_k) + eps)]
Code (the authors' sail-sg/Adan conventions): beta1, beta2, beta3 = 0.98, 0.92, 0.99 (= 1 - b);
g_{-1} = g_0, so the first difference is zero; m, v and n are bias-corrected by 1 - beta^k as the
official code does (the paper's algorithm has no correction); eps is added after the square
root; weight decay is the proximal step above (`no_prox=False`), or decoupled
`theta *= 1 - lr * wd` before the update when `no_prox=True`.
"""

import math

import torch

from algobench import schedules
from algobench.workload import param_groups

PAPER = "Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing Deep Models (Xie et al., 2022)"

REFERENCE = "sail-sg/Adan, adan.py (commit 062d4cd; Adan with max_grad_norm=0, `_single_tensor_adan`)"
EQUAL_UNDER = ("float64, no_prox on and off, None gradients in a group with gradients (the step count is the "
               "group's in both); tested in tests/test_reference_adaptive.py")
REFERENCE_TEST = "tests/test_reference_adaptive.py::test_adan_equals_sail_sg_adan"
DIFFERENCES = [  # every deliberate difference from REFERENCE, with its reason
    ("A step() at which no tensor of a group has a gradient does not advance that group's step count; the "
     "release's does."),
    "No max_grad_norm option (the harness clips with grad_clip before the step instead).",
    ("make_optimizer exempts biases and norms from weight decay (algobench.workload.param_groups); the release "
     "decays every tensor it is given."),
]

HPARAMS = {
    "learning_rate": 1e-2,
    "beta1": 0.98,
    "beta2": 0.92,
    "beta3": 0.99,
    "eps": 1e-8,
    "weight_decay": 0.02,
    "no_prox": False,
    "warmup_frac": 0.05,
    "grad_clip": 1.0,
}

SEARCH_SPACE = {
    "learning_rate": {"min": 1e-3, "max": 3e-2, "scaling": "log"},
    "beta1": {"feasible_points": [0.98, 0.95]},
    "beta2": {"feasible_points": [0.92, 0.9]},
    "beta3": {"feasible_points": [0.99, 0.995]},
    "weight_decay": {"min": 1e-3, "max": 0.1, "scaling": "log"},
    "warmup_frac": {"feasible_points": [0.02, 0.05, 0.1]},
}


class Adan(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float, float] = (0.98, 0.92, 0.99),
                 eps: float = 1e-8, weight_decay: float = 0.0, no_prox: bool = False) -> None:
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Adan betas must lie in [0, 1): {betas}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, no_prox=no_prox))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            for p in params:
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_diff"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    state["prev_grad"] = p.grad.clone()
            group["step"] = group.get("step", 0) + 1
            k = group["step"]
            beta1, beta2, beta3 = group["betas"]
            lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
            m, v, n, prev = ([self.state[p][key] for p in params]
                             for key in ("exp_avg", "exp_avg_diff", "exp_avg_sq", "prev_grad"))

            diff = torch._foreach_sub(grads, prev)  # g_k - g_{k-1}
            nesterov = torch._foreach_add(grads, diff, alpha=beta2)  # g_k + (1 - b2) diff
            torch._foreach_lerp_(m, grads, 1 - beta1)
            torch._foreach_lerp_(v, diff, 1 - beta2)
            torch._foreach_mul_(n, beta3)
            torch._foreach_addcmul_(n, nesterov, nesterov, value=1 - beta3)

            denom = torch._foreach_sqrt(n)
            torch._foreach_div_(denom, math.sqrt(1 - beta3**k))
            torch._foreach_add_(denom, eps)
            direction = torch._foreach_div(m, 1 - beta1**k)
            torch._foreach_add_(direction, torch._foreach_div(v, (1 - beta2**k) / beta2))
            torch._foreach_div_(direction, denom)

            if group["no_prox"]:
                torch._foreach_mul_(params, 1 - lr * wd)
                torch._foreach_add_(params, direction, alpha=-lr)
            else:
                torch._foreach_add_(params, direction, alpha=-lr)
                torch._foreach_div_(params, 1 + lr * wd)
            torch._foreach_copy_(prev, grads)
        return loss


def make_optimizer(*, model, hparams, workload) -> torch.optim.Optimizer:
    return Adan(param_groups(model, workload, weight_decay=hparams.weight_decay), lr=hparams.learning_rate,
                betas=(hparams.beta1, hparams.beta2, hparams.beta3), eps=hparams.eps, no_prox=hparams.no_prox)


def make_optax(*, learning_rate, hparams, workload):
    """The same update in JAX (`--framework jax`), as an optax (init, update) pair (optax has no
    Adan). The first step's previous gradient is the gradient itself, as above."""
    import jax
    import jax.numpy as jnp
    import optax

    beta1, beta2, beta3, eps, wd = hparams.beta1, hparams.beta2, hparams.beta3, hparams.eps, hparams.weight_decay
    lr = learning_rate

    def init(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # noqa: E731
        return {"count": jnp.zeros((), jnp.int32), "exp_avg": zeros(), "exp_avg_diff": zeros(),
                "exp_avg_sq": zeros(), "prev_grad": zeros()}

    def update(grads, state, params):
        k = state["count"] + 1
        first = state["count"] == 0
        diff = jax.tree.map(lambda g, prev: jnp.where(first, 0.0, g - prev), grads, state["prev_grad"])
        nesterov = jax.tree.map(lambda g, d: g + beta2 * d, grads, diff)
        m = jax.tree.map(lambda m, g: beta1 * m + (1 - beta1) * g, state["exp_avg"], grads)
        v = jax.tree.map(lambda v, d: beta2 * v + (1 - beta2) * d, state["exp_avg_diff"], diff)
        n = jax.tree.map(lambda n, x: beta3 * n + (1 - beta3) * x * x, state["exp_avg_sq"], nesterov)
        bias1, bias2, bias3 = 1 - beta1**k, (1 - beta2**k) / beta2, jnp.sqrt(1 - beta3**k)

        def step(m, v, n, p, decay):
            direction = (m / bias1 + v / bias2) / (jnp.sqrt(n) / bias3 + eps)
            decay_rate = lr * wd if decay else 0.0
            if hparams.no_prox:  # theta * (1 - lr wd) - lr direction
                return -decay_rate * p - lr * direction
            return -(lr * direction + decay_rate * p) / (1 + decay_rate)  # (theta - lr d) / (1 + lr wd) - theta

        updates = jax.tree.map(step, m, v, n, params, workload.decay_mask)
        return updates, {"count": k, "exp_avg": m, "exp_avg_diff": v, "exp_avg_sq": n, "prev_grad": grads}

    return optax.GradientTransformation(init, update)


lr_schedule = schedules.lr_schedule("warmup_cosine", warmup="warmup_frac")
