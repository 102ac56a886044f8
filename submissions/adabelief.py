"""AdaBelief (Zhuang et al., 2020), decoupled weight decay, optional rectification; warmup + cosine.

Paper (Algorithm 2; beta1, beta2 as in code), s is the EMA of the squared "belief" residual:
    m_t = beta1 m_{t-1} + (1 - beta1) g_t
    s_t = beta2 s_{t-1} + (1 - beta2) (g_t - m_t)^2 + eps
    theta_t = theta_{t-1} - lr * (m_t / (1 - beta1^t)) / (sqrt(s_t / (1 - beta2^t)) + eps)
Code (the authors' adabelief-pytorch 0.2.1, `AdaBelief.py`, with `weight_decouple=True,
fixed_decay=False, degenerated_to_sgd=True`): theta <- theta * (1 - lr * wd) first; eps is added to
s in place every step (so it stays in the state, as in the paper) and once more outside the square
root. With `rectify` the step is RAdam's: N_inf = 2 / (1 - beta2) - 1,
N_t = N_inf - 2 t beta2^t / (1 - beta2^t); when N_t >= 5
    theta <- theta - lr * r_t sqrt(1 - beta2^t) / (1 - beta1^t) * m_t / (sqrt(s_t) + eps),
    r_t = sqrt((N_t - 4)(N_t - 2) N_inf / ((N_inf - 4)(N_inf - 2) N_t))
(eps outside the un-corrected square root, as that branch of the code), otherwise the SGD-style
step theta <- theta - lr * m_t / (1 - beta1^t) (bias-corrected momentum). Not carried over: amsgrad
(broken in 0.2.1: its max is never stored) and the printed change log.
"""

import math

import torch

from algobench import schedules
from algobench.workload import param_groups
from submissions._foreach import closure_loss, group_tensors

PAPER = ("AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed Gradients "
         "(Zhuang et al., NeurIPS 2020)")

REFERENCE = ("juntang-zhuang/Adabelief-Optimizer, "
             "pypi_packages/adabelief_pytorch0.2.1/adabelief_pytorch/AdaBelief.py (adabelief-pytorch 0.2.1)")
EQUAL_UNDER = ("float64, rectify on and off, eps 1e-16 and 1e-8, weight_decouple=True, fixed_decay=False, "
               "degenerated_to_sgd=True, None gradients (a tensor in a group of its own); tested in "
               "tests/test_reference_adaptive.py")
REFERENCE_TEST = "tests/test_reference_adaptive.py::test_adabelief_equals_adabelief_pytorch_0_2_1"
DIFFERENCES = [  # every deliberate difference from REFERENCE, with its reason
    ("The step count t is kept per parameter group, the release's per tensor: equal while every tensor of a group"
     " has a gradient at every step; a tensor whose gradient is None at some steps gets the group's t in its bias"
     " corrections."),
    ("Only the release's defaults weight_decouple=True, fixed_decay=False, degenerated_to_sgd=True are offered; "
     "amsgrad is not (in 0.2.1 its running max is never stored)."),
    ("make_optimizer exempts biases and norms from weight decay (algobench.workload.param_groups); the release "
     "decays every tensor it is given."),
]

HPARAMS = {
    "learning_rate": 6e-3,
    "beta1": 0.9,
    "beta2": 0.999,
    "eps": 1e-16,
    "weight_decay": 0.1,
    "rectify": True,
    "warmup_frac": 0.05,
    "grad_clip": 1.0,
}

SEARCH_SPACE = {  # the authors' recommendations for transformers: eps 1e-16, decoupled decay, rectify
    "learning_rate": {"min": 3e-4, "max": 1e-2, "scaling": "log"},
    "beta2": {"feasible_points": [0.999, 0.99]},
    "eps": {"feasible_points": [1e-16, 1e-12, 1e-8]},
    "weight_decay": {"min": 1e-3, "max": 0.3, "scaling": "log"},
    "rectify": {"feasible_points": [True, False]},
    "warmup_frac": {"feasible_points": [0.02, 0.05, 0.1]},
}


class AdaBelief(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-16, weight_decay: float = 0.0, rectify: bool = True) -> None:
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"AdaBelief betas must lie in [0, 1): {betas}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, rectify=rectify))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            params, grads, (m, s) = group_tensors(self, group, ("exp_avg", "exp_avg_var"))
            if not params:
                continue
            group["step"] = t = group.get("step", 0) + 1
            beta1, beta2 = group["betas"]
            lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]

            if wd:
                torch._foreach_mul_(params, 1 - lr * wd)
            torch._foreach_lerp_(m, grads, 1 - beta1)
            residual = torch._foreach_sub(grads, m)
            torch._foreach_mul_(s, beta2)
            torch._foreach_addcmul_(s, residual, residual, value=1 - beta2)
            torch._foreach_add_(s, eps)
            bias1, bias2 = 1 - beta1**t, 1 - beta2**t

            denom = torch._foreach_sqrt(s)
            if not group["rectify"]:
                torch._foreach_div_(denom, math.sqrt(bias2))
                torch._foreach_add_(denom, eps)
                torch._foreach_addcdiv_(params, m, denom, value=-lr / bias1)
                continue
            n_inf = 2.0 / (1.0 - beta2) - 1.0
            n_t = n_inf - 2.0 * t * beta2**t / bias2
            if n_t < 5:  # variance not yet tractable: SGD step on the bias-corrected momentum
                torch._foreach_add_(params, m, alpha=-lr / bias1)
                continue
            rect = math.sqrt(bias2 * (n_t - 4) / (n_inf - 4) * (n_t - 2) / n_t * n_inf / (n_inf - 2))
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, m, denom, value=-lr * rect / bias1)
        return loss


def make_optimizer(*, model, hparams, workload) -> torch.optim.Optimizer:
    return AdaBelief(param_groups(model, workload, weight_decay=hparams.weight_decay), lr=hparams.learning_rate,
                     betas=(hparams.beta1, hparams.beta2), eps=hparams.eps, rectify=hparams.rectify)


lr_schedule = schedules.lr_schedule("warmup_cosine", warmup="warmup_frac")
