"""LAMB (You et al., 2020): Adam's direction with a layer-wise trust ratio; warmup + cosine.

Paper (Algorithm 2, beta1, beta2 as in code), per parameter tensor ("layer") i:
    m <- beta1 m + (1 - beta1) g ;  v <- beta2 v + (1 - beta2) g^2
    r = (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
    u = r + wd * theta
    theta <- theta - lr * phi(||theta||) / ||u|| * u,   phi(z) = z
Conventions of the authors' TensorFlow implementation (tensorflow_addons LAMB): eps 1e-6 added
after the bias-corrected square root; the trust ratio is 1 when ||theta|| or ||u|| is 0; tensors
excluded from weight decay (biases, norms) are also excluded from layer adaptation, so they take
the plain Adam step (a zero-initialised bias would otherwise never move: ||theta|| = 0, then tiny).
"""

import math

import torch

from algobench import schedules
from algobench.workload import param_groups
from submissions._foreach import closure_loss, group_tensors

PAPER = "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes (You et al., ICLR 2020)"

REFERENCE = "tensorflow/addons, tensorflow_addons/optimizers/lamb.py (LAMB._resource_apply_dense)"
EQUAL_UNDER = ("float64, the decayed tensors layer-adapted and the others not (exclude_from_layer_adaptation "
               "defaulting to exclude_from_weight_decay), None gradients in a group with gradients; tested in "
               "tests/test_reference_adaptive.py")
REFERENCE_TEST = "tests/test_reference_adaptive.py::test_lamb_equals_tensorflow_addons_lamb"
DIFFERENCES = [  # every deliberate difference from REFERENCE, with its reason
    ("The step count is per parameter group; the release uses the optimizer's iteration count, shared by all "
     "variables: equal unless a whole group lacks gradients at a step."),
    ("make_optimizer excludes biases and norms from weight decay and from layer adaptation (they take the plain "
     "Adam step, so a zero-initialised bias can move); the release excludes nothing unless "
     "exclude_from_weight_decay names them, and then excludes them from both."),
]

HPARAMS = {
    "learning_rate": 2e-2,
    "beta1": 0.9,
    "beta2": 0.999,
    "eps": 1e-6,
    "weight_decay": 0.01,
    "warmup_frac": 0.05,
    "grad_clip": 1.0,
}

SEARCH_SPACE = {  # the paper's betas (0.9, 0.999), eps 1e-6, weight decay 0.01
    "learning_rate": {"min": 1e-3, "max": 5e-2, "scaling": "log"},
    "beta2": {"feasible_points": [0.999, 0.99, 0.95]},
    "weight_decay": {"min": 1e-3, "max": 0.1, "scaling": "log"},
    "warmup_frac": {"feasible_points": [0.02, 0.05, 0.1]},
}


class Lamb(torch.optim.Optimizer):
    """`adapt=False` in a group turns off the trust ratio there (make_optimizer: biases and norms)."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.0, adapt: bool = True) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, adapt=adapt))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            params, grads, (m, v) = group_tensors(self, group, ("exp_avg", "exp_avg_sq"))
            if not params:
                continue
            group["step"] = t = group.get("step", 0) + 1
            beta1, beta2 = group["betas"]
            lr, wd = group["lr"], group["weight_decay"]

            torch._foreach_lerp_(m, grads, 1 - beta1)
            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, grads, grads, value=1 - beta2)
            denom = torch._foreach_sqrt(v)
            torch._foreach_div_(denom, math.sqrt(1 - beta2**t))
            torch._foreach_add_(denom, group["eps"])
            updates = torch._foreach_div(m, denom)
            torch._foreach_div_(updates, 1 - beta1**t)
            if wd:
                torch._foreach_add_(updates, params, alpha=wd)
            if group["adapt"]:
                w_norm = torch.stack(torch._foreach_norm(params))
                u_norm = torch.stack(torch._foreach_norm(updates))
                ratio = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
                torch._foreach_mul_(updates, list(ratio.unbind()))
            torch._foreach_add_(params, updates, alpha=-lr)
        return loss


def make_optimizer(*, model, hparams, workload) -> torch.optim.Optimizer:
    groups = param_groups(model, workload, weight_decay=hparams.weight_decay)
    for group in groups[1:]:  # the no-decay group: biases and norms
        group["adapt"] = False
    return Lamb(groups, lr=hparams.learning_rate, betas=(hparams.beta1, hparams.beta2), eps=hparams.eps)


lr_schedule = schedules.lr_schedule("warmup_cosine", warmup="warmup_frac")
