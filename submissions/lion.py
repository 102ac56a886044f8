"""Lion (Chen et al., 2023): the sign of an interpolated momentum; warmup + cosine.

Paper (Program 1, beta1, beta2 as in code), and the authors' lion_pytorch.py line for line:
    theta <- theta * (1 - lr * wd)                       (decoupled)
    theta <- theta - lr * sign(beta1 m + (1 - beta1) g)
    m <- beta2 m + (1 - beta2) g
One state tensor (4 bytes per parameter). The authors advise an lr 3-10x smaller and a weight
decay 3-10x larger than AdamW's, and betas (0.95, 0.98) for language models.
"""

import torch

from algobench import schedules
from algobench.workload import param_groups
from submissions._foreach import closure_loss, group_tensors

PAPER = "Symbolic Discovery of Optimization Algorithms (Chen et al., NeurIPS 2023)"

REFERENCE = "lucidrains/lion-pytorch, lion_pytorch/lion_pytorch.py (lion-pytorch 0.2.5, decoupled_wd=False)"
EQUAL_UNDER = "float64, weight decay on and off, None gradients; tested in tests/test_reference_adaptive.py"
REFERENCE_TEST = "tests/test_reference_adaptive.py::test_lion_equals_lucidrains_lion"
DIFFERENCES = [  # every deliberate difference from REFERENCE, with its reason
    "No decoupled_wd option (the release's wd / init_lr scaling) and no use_triton kernel.",
    ("make_optimizer exempts biases and norms from weight decay (algobench.workload.param_groups); the release "
     "decays every tensor it is given."),
]

HPARAMS = {
    "learning_rate": 1e-3,
    "beta1": 0.95,
    "beta2": 0.98,
    "weight_decay": 0.3,
    "warmup_frac": 0.05,
    "grad_clip": 1.0,
}

SEARCH_SPACE = {  # lr and wd around AdamW's / 10 and * 10; the paper's two beta settings
    "learning_rate": {"min": 1e-4, "max": 3e-3, "scaling": "log"},
    "beta1": {"feasible_points": [0.9, 0.95]},
    "beta2": {"feasible_points": [0.99, 0.98]},
    "weight_decay": {"min": 0.1, "max": 3.0, "scaling": "log"},
    "warmup_frac": {"feasible_points": [0.02, 0.05, 0.1]},
}


class Lion(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0) -> None:
        if not all(0.0 <= b <= 1.0 for b in betas):
            raise ValueError(f"Lion betas must lie in [0, 1]: {betas}")
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            params, grads, (m,) = group_tensors(self, group, ("exp_avg",))
            if not params:
                continue
            beta1, beta2 = group["betas"]
            lr, wd = group["lr"], group["weight_decay"]

            if wd:
                torch._foreach_mul_(params, 1 - lr * wd)
            direction = torch._foreach_lerp(m, grads, 1 - beta1)
            torch._foreach_sign_(direction)
            torch._foreach_add_(params, direction, alpha=-lr)
            torch._foreach_lerp_(m, grads, 1 - beta2)
        return loss


def make_optimizer(*, model, hparams, workload) -> torch.optim.Optimizer:
    return Lion(param_groups(model, workload, weight_decay=hparams.weight_decay), lr=hparams.learning_rate,
                betas=(hparams.beta1, hparams.beta2))


lr_schedule = schedules.lr_schedule("warmup_cosine", warmup="warmup_frac")
