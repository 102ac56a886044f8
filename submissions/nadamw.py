"""NAdamW with linear warmup and cosine decay: AlgoPerf's baseline.

Update, as AlgoPerf's PyTorch NAdamW (Dozat 2016's Nesterov momentum, decoupled weight decay):
    theta <- theta * (1 - lr * wd)
    m <- beta1 m + (1 - beta1) g ;  v <- beta2 v + (1 - beta2) g^2
    m_nesterov = beta1 m + (1 - beta1) g
    theta <- theta - lr / (1 - beta1^t) * m_nesterov / (sqrt(v / (1 - beta2^t)) + eps)
Hyperparameter names are AlgoPerf's (`one_minus_beta1`, `warmup_factor`). Differences from
AlgoPerf's baseline: warmup starts at lr * 1/warmup_steps on step 0 rather than AlgoPerf's LinearLR
start factor of 1e-10; `make_optimizer` exempts biases and norms from weight decay
(`algobench.workload.param_groups`) while AlgoPerf's NAdamW decays every tensor. Set the hparam
`decay_every_tensor: true` (e.g. with `--hparams FILE`) for AlgoPerf's decay of every tensor.
"""

import math

import torch

from algobench import schedules
from algobench.workload import ParamKind, param_groups

PAPER = "Incorporating Nesterov Momentum into Adam (Dozat, 2016); AlgoPerf baseline (Dahl et al., 2023)"

REFERENCE = ("mlcommons/algorithmic-efficiency, reference_algorithms/paper_baselines/nadamw/pytorch/submission.py"
             " (commit 5a06a0d)")
EQUAL_UNDER = ("float64, weight decay on and off, None gradients (a tensor in a group of its own); "
               "decay_every_tensor=true for AlgoPerf's decay of every tensor; tested in "
               "tests/test_reference_adaptive.py")
REFERENCE_TEST = "tests/test_reference_adaptive.py::test_nadamw_equals_algoperf_nadamw"
DIFFERENCES = [  # every deliberate difference from REFERENCE, with its reason
    ("make_optimizer exempts biases and norms from weight decay unless decay_every_tensor is true; AlgoPerf's "
     "NAdamW decays every tensor."),
    "Warmup starts at lr / warmup_steps on step 0; AlgoPerf's LinearLR starts at 1e-10 * lr.",
    ("The step count t is kept per parameter group, the release's per tensor: equal while every tensor of a group"
     " has a gradient at every step; a tensor whose gradient is None at some steps gets the group's t in its bias"
     " corrections."),
]

HPARAMS = {
    "learning_rate": 3e-3,
    "one_minus_beta1": 0.1,
    "beta2": 0.95,
    "eps": 1e-8,
    "weight_decay": 0.1,
    "warmup_factor": 0.05,
    "grad_clip": 1.0,
    "decay_every_tensor": False,  # True: AlgoPerf's weight decay on every tensor, biases and norms too
}

SEARCH_SPACE = {
    "learning_rate": {"min": 3e-4, "max": 1e-2, "scaling": "log"},
    "one_minus_beta1": {"min": 0.02, "max": 0.2, "scaling": "log"},
    "beta2": {"feasible_points": [0.95, 0.99, 0.999]},
    "weight_decay": {"min": 1e-3, "max": 0.3, "scaling": "log"},
    "warmup_factor": {"feasible_points": [0.02, 0.05]},
}


class NAdamW(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

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
                if not self.state[p]:
                    self.state[p]["exp_avg"] = torch.zeros_like(p)
                    self.state[p]["exp_avg_sq"] = torch.zeros_like(p)
            group["step"] = group.get("step", 0) + 1
            t = group["step"]
            beta1, beta2 = group["betas"]
            lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
            m = [self.state[p]["exp_avg"] for p in params]
            v = [self.state[p]["exp_avg_sq"] for p in params]

            torch._foreach_mul_(params, 1 - lr * wd)
            torch._foreach_lerp_(m, grads, 1 - beta1)
            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, grads, grads, value=1 - beta2)
            nesterov = torch._foreach_lerp(m, grads, 1 - beta1)
            denom = torch._foreach_sqrt(v)
            torch._foreach_div_(denom, math.sqrt(1 - beta2**t))
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, nesterov, denom, value=-lr / (1 - beta1**t))
        return loss


def make_optimizer(*, model, hparams, workload) -> torch.optim.Optimizer:
    decay_kinds = tuple(ParamKind) if hparams.decay_every_tensor else (ParamKind.WEIGHT, ParamKind.EMBEDDING)
    groups = param_groups(model, workload, weight_decay=hparams.weight_decay, decay_kinds=decay_kinds)
    return NAdamW(groups, lr=hparams.learning_rate, betas=(1 - hparams.one_minus_beta1, hparams.beta2),
                  eps=hparams.eps, weight_decay=hparams.weight_decay)


def make_optax(*, learning_rate, hparams, workload):
    """The same update in JAX (`--framework jax`), as an optax (init, update) pair: optax's own
    nadamw bias-corrects its Nesterov term differently (Dozat's 1 - beta1^(t+1))."""
    import jax
    import jax.numpy as jnp
    import optax

    beta1, beta2, eps, wd = 1 - hparams.one_minus_beta1, hparams.beta2, hparams.eps, hparams.weight_decay
    every = hparams.decay_every_tensor  # AlgoPerf's decay of every tensor

    def init(params):
        return {"count": jnp.zeros((), jnp.int32), "exp_avg": jax.tree.map(jnp.zeros_like, params),
                "exp_avg_sq": jax.tree.map(jnp.zeros_like, params)}

    def update(grads, state, params):
        t = state["count"] + 1
        m = jax.tree.map(lambda m, g: beta1 * m + (1 - beta1) * g, state["exp_avg"], grads)
        v = jax.tree.map(lambda v, g: beta2 * v + (1 - beta2) * g * g, state["exp_avg_sq"], grads)
        bias1, bias2 = 1 - beta1**t, jnp.sqrt(1 - beta2**t)

        def step(m, v, g, p, decay):
            nesterov = beta1 * m + (1 - beta1) * g
            decayed = wd * p if decay or every else 0.0
            return -learning_rate * (nesterov / bias1 / (jnp.sqrt(v) / bias2 + eps) + decayed)

        updates = jax.tree.map(step, m, v, grads, params, workload.decay_mask)
        return updates, {"count": t, "exp_avg": m, "exp_avg_sq": v}

    return optax.GradientTransformation(init, update)


lr_schedule = schedules.lr_schedule("warmup_cosine", warmup="warmup_factor")
