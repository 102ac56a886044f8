"""SGD-SaI (Xu et al., 2024): SGD with momentum, each parameter tensor's learning rate scaled once,
at the first step, by its gradient signal-to-noise ratio; no second moment. Warmup + cosine.

Paper (Algorithm 1) and the authors' sgd_sai.py (v1.0.3), per parameter tensor ("block") i:
    at t = 1:  gsnr_i = ||g_i||_2 / (std(g_i) + eps)      (unbiased std; nan -> 0 for 1 element)
    b_i <- g_i at t = 1, then b_i <- mu b_i + (1 - mu) g_i
    theta_i <- theta_i * (1 - lr * wd) - lr * gsnr_i * b_i   (decoupled decay, not scaled by gsnr)
State: the momentum buffer (4 bytes per parameter) and one scalar per tensor. Difference: the
gsnr is kept per parameter in the optimizer state and computed for any parameter that has none,
so a resumed optimizer keeps its scales (the official code re-measures them after a reload).
"""

import torch

from algobench import schedules
from algobench.workload import param_groups

PAPER = "No More Adam: Learning Rate Scaling at Initialization is All You Need (Xu et al., 2024)"

REFERENCE = "AnonymousAlethiometer/SGD_SaI, sgd_sai/sgd_sai.py (sgd-sai 1.0.3)"
EQUAL_UNDER = ("float64, weight decay on and off, a scalar (std nan -> 0), None gradients after the first step; "
               "tested in tests/test_reference_adaptive.py")
REFERENCE_TEST = "tests/test_reference_adaptive.py::test_sgd_sai_equals_sgd_sai_1_0_3"
DIFFERENCES = [  # every deliberate difference from REFERENCE, with its reason
    ("The gsnr is kept per tensor in the optimizer state and measured for any tensor that has none, so a resumed "
     "optimizer keeps its scales and a tensor without a gradient at the first step gets one later; the release "
     "measures all tensors in its first step() only (and again after a reload)."),
    ("make_optimizer exempts biases and norms from weight decay (algobench.workload.param_groups); the release "
     "decays every tensor it is given."),
]

HPARAMS = {
    "learning_rate": 1e-2,
    "momentum": 0.9,
    "eps": 1e-8,
    "weight_decay": 0.1,
    "warmup_frac": 0.05,
    "grad_clip": 1.0,
}

SEARCH_SPACE = {  # the authors' defaults: momentum 0.9, eps 1e-8, weight decay 1e-2 .. 0.1
    "learning_rate": {"min": 1e-3, "max": 1e-1, "scaling": "log"},
    "momentum": {"feasible_points": [0.9, 0.95]},
    "weight_decay": {"min": 1e-3, "max": 0.3, "scaling": "log"},
    "warmup_frac": {"feasible_points": [0.02, 0.05, 0.1]},
}


class SGDSaI(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-2, momentum: float = 0.9, eps: float = 1e-8,
                 weight_decay: float = 1e-2) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"SGD-SaI momentum must lie in [0, 1): {momentum}")
        super().__init__(params, dict(lr=lr, momentum=momentum, eps=eps, weight_decay=weight_decay))

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
            fresh = set()  # ids of tensors whose buffer starts at this step's gradient
            for p in params:
                state = self.state[p]
                if "gsnr" not in state:  # scaling at initialization: once per tensor
                    state["gsnr"] = p.grad.norm() / (p.grad.std().nan_to_num() + group["eps"])
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = p.grad.clone()
                    fresh.add(id(p))
            lr, wd = group["lr"], group["weight_decay"]
            old = [p for p in params if id(p) not in fresh]
            if old:
                torch._foreach_lerp_([self.state[p]["momentum_buffer"] for p in old], [p.grad for p in old],
                                     1 - group["momentum"])
            if wd:
                torch._foreach_mul_(params, 1 - lr * wd)
            steps = torch._foreach_mul([self.state[p]["momentum_buffer"] for p in params],
                                       [self.state[p]["gsnr"] for p in params])
            torch._foreach_add_(params, steps, alpha=-lr)
        return loss


def make_optimizer(*, model, hparams, workload) -> torch.optim.Optimizer:
    return SGDSaI(param_groups(model, workload, weight_decay=hparams.weight_decay), lr=hparams.learning_rate,
                  momentum=hparams.momentum, eps=hparams.eps)


lr_schedule = schedules.lr_schedule("warmup_cosine", warmup="warmup_frac")
