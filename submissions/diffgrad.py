"""diffGrad (Dubey et al., 2019): Adam whose momentum is damped by a friction coefficient from the
change of the gradient; warmup + cosine.

Paper (beta1, beta2 as in code), with xi the "diffGrad friction coefficient":
    m_t = beta1 m_{t-1} + (1 - beta1) g_t ;  v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
    xi_t = 1 / (1 + exp(-|g_{t-1} - g_t|))          (sigmoid of the absolute change; g_0 = 0)
    theta_{t+1} = theta_t - lr * xi_t * m_hat_t / (sqrt(v_hat_t) + eps)
Code (the authors' diffGrad_v2.py, which fixes the stored-previous-gradient bug of diffGrad.py):
L2 weight decay is added to the gradient first (g <- g + wd * theta, coupled, as the official code;
the previous gradient kept is this g), and eps sits outside the un-corrected square root with the
bias corrections in the step size: theta <- theta - lr * sqrt(1 - beta2^t) / (1 - beta1^t) *
xi * m / (sqrt(v) + eps). Difference: p.grad is not modified in place.
"""

import math

import torch

from algobench import schedules
from algobench.workload import param_groups
from submissions._foreach import closure_loss, group_tensors

PAPER = "diffGrad: An Optimization Method for Convolutional Neural Networks (Dubey et al., IEEE TNNLS 2019)"

REFERENCE = "shivram1987/diffGrad, diffGrad_v2.py (commit 93fb7fc)"
EQUAL_UNDER = ("float64, weight decay 0 and 1e-2 (coupled, added to the gradient), None gradients (a tensor in a "
               "group of its own); tested in tests/test_reference_adaptive.py")
REFERENCE_TEST = "tests/test_reference_adaptive.py::test_diffgrad_equals_diffgrad_v2"
DIFFERENCES = [  # every deliberate difference from REFERENCE, with its reason
    ("The step count t is kept per parameter group, the release's per tensor: equal while every tensor of a group"
     " has a gradient at every step; a tensor whose gradient is None at some steps gets the group's t in its bias"
     " corrections."),
    ("p.grad is not modified in place (the release adds the weight decay into p.grad); the stored previous "
     "gradient includes the decay in both."),
    ("make_optimizer exempts biases and norms from weight decay (algobench.workload.param_groups); the release "
     "decays every tensor it is given."),
]

HPARAMS = {
    "learning_rate": 6e-3,
    "beta1": 0.9,
    "beta2": 0.999,
    "eps": 1e-8,
    "weight_decay": 0.0,
    "warmup_frac": 0.05,
    "grad_clip": 1.0,
}

SEARCH_SPACE = {  # the authors' defaults: betas (0.9, 0.999), eps 1e-8, no weight decay
    "learning_rate": {"min": 3e-4, "max": 1e-2, "scaling": "log"},
    "beta2": {"feasible_points": [0.999, 0.99, 0.95]},
    "weight_decay": {"feasible_points": [0.0, 1e-5, 1e-4]},
    "warmup_frac": {"feasible_points": [0.02, 0.05, 0.1]},
}


class DiffGrad(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"diffGrad betas must lie in [0, 1): {betas}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            params, grads, (m, v, prev) = group_tensors(self, group, ("exp_avg", "exp_avg_sq", "previous_grad"))
            if not params:
                continue
            group["step"] = t = group.get("step", 0) + 1
            beta1, beta2 = group["betas"]
            lr, wd = group["lr"], group["weight_decay"]
            if wd:
                grads = torch._foreach_add(grads, params, alpha=wd)

            torch._foreach_lerp_(m, grads, 1 - beta1)
            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, grads, grads, value=1 - beta2)
            friction = torch._foreach_sub(prev, grads)
            torch._foreach_abs_(friction)
            torch._foreach_sigmoid_(friction)
            torch._foreach_copy_(prev, grads)
            torch._foreach_mul_(friction, m)
            denom = torch._foreach_sqrt(v)
            torch._foreach_add_(denom, group["eps"])
            torch._foreach_addcdiv_(params, friction, denom, value=-lr * math.sqrt(1 - beta2**t) / (1 - beta1**t))
        return loss


def make_optimizer(*, model, hparams, workload) -> torch.optim.Optimizer:
    return DiffGrad(param_groups(model, workload, weight_decay=hparams.weight_decay), lr=hparams.learning_rate,
                    betas=(hparams.beta1, hparams.beta2), eps=hparams.eps)


lr_schedule = schedules.lr_schedule("warmup_cosine", warmup="warmup_frac")
