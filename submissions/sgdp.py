"""SGDP (Heo et al., 2021): SGD with momentum without the radial component on scale-invariant weights.

Update (the official clovaai/AdamP `SGDP`, momentum buffer starting at zero):
    b <- mu b + (1 - dampening) g
    d = g + mu b (nesterov) or d = b (the buffer itself, not a copy)
    d, r <- projection(theta, g, d)       (see submissions/adamp.py: r = wd_ratio on weights taken
                                           as scale-invariant, else 1; only weights of 2+ dims).
                                           The projection subtracts in place, so without Nesterov
                                           the radial component leaves the stored momentum too.
    theta <- theta * (1 - lr * wd * r / (1 - mu))    (decoupled, scaled by the momentum's 1/(1-mu))
    theta <- theta - lr * d
Schedule: linear warmup then cosine (the paper's ImageNet runs use cosine decay). The projection is
chosen with torch.where (no host sync) and written back into d, as the official in-place `-=`.
"""

import torch

from algobench import schedules
from algobench.workload import param_groups
from submissions._foreach import closure_loss, group_tensors
from submissions.adamp import radial_projection

PAPER = ("AdamP: Slowing Down the Slowdown for Momentum Optimizers on Scale-invariant Weights "
         "(Heo et al., ICLR 2021)")

REFERENCE = "clovaai/AdamP, adamp/sgdp.py (adamp 0.3.0)"
EQUAL_UNDER = ("float64, nesterov on and off, both projections firing (without Nesterov the buffer itself is "
               "projected), None gradients; tested in tests/test_reference_adaptive.py")
REFERENCE_TEST = "tests/test_reference_adaptive.py::test_sgdp_equals_clovaai_sgdp"
DIFFERENCES = [  # every deliberate difference from REFERENCE, with its reason
    ("The projection is chosen with torch.where (no host sync) and written back in place, instead of the "
     "release's `if`: the same numbers."),
    ("make_optimizer exempts biases and norms from weight decay (algobench.workload.param_groups); the release "
     "decays every tensor it is given."),
]

HPARAMS = {
    "learning_rate": 0.25,
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 1e-5,
    "eps": 1e-8,
    "delta": 0.1,
    "wd_ratio": 0.1,
    "warmup_frac": 0.05,
    "grad_clip": 1.0,
}

SEARCH_SPACE = {  # the authors' defaults: delta 0.1, wd_ratio 0.1, Nesterov momentum 0.9
    "learning_rate": {"min": 2e-2, "max": 5.0, "scaling": "log"},
    "momentum": {"feasible_points": [0.9, 0.95]},
    "nesterov": {"feasible_points": [True, False]},
    "weight_decay": {"min": 1e-7, "max": 1e-4, "scaling": "log"},
    "delta": {"feasible_points": [0.1]},
    "wd_ratio": {"feasible_points": [0.1]},
    "warmup_frac": {"feasible_points": [0.02, 0.05, 0.1]},
}


class SGDP(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 0.1, momentum: float = 0.9, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, eps: float = 1e-8, delta: float = 0.1,
                 wd_ratio: float = 0.1) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"SGDP momentum must lie in [0, 1): {momentum}")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, eps=eps, delta=delta, wd_ratio=wd_ratio))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            params, grads, (bufs,) = group_tensors(self, group, ("momentum",))
            if not params:
                continue
            mu, lr, wd = group["momentum"], group["lr"], group["weight_decay"]

            torch._foreach_mul_(bufs, mu)
            torch._foreach_add_(bufs, grads, alpha=1 - group["dampening"])
            directions = list(torch._foreach_add(grads, bufs, alpha=mu) if group["nesterov"] else bufs)

            for i, (p, g) in enumerate(zip(params, grads)):
                decay = 1.0
                if p.dim() > 1:
                    projected, decay = radial_projection(p, g, directions[i], delta=group["delta"],
                                                         wd_ratio=group["wd_ratio"], eps=group["eps"])
                    directions[i].copy_(projected)  # in place: without Nesterov, the momentum buffer itself
                if wd > 0:
                    p.mul_(1 - lr * wd * decay / (1 - mu))
            torch._foreach_add_(params, directions, alpha=-lr)
        return loss


def make_optimizer(*, model, hparams, workload) -> torch.optim.Optimizer:
    return SGDP(param_groups(model, workload, weight_decay=hparams.weight_decay), lr=hparams.learning_rate,
                momentum=hparams.momentum, nesterov=hparams.nesterov, eps=hparams.eps, delta=hparams.delta,
                wd_ratio=hparams.wd_ratio)


lr_schedule = schedules.lr_schedule("warmup_cosine", warmup="warmup_frac")
