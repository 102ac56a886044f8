"""AdamP (Heo et al., 2021): Adam without the radial component on scale-invariant weights.

Adam part (beta1, beta2 as in code; eps after the bias-corrected square root):
    m <- beta1 m + (1 - beta1) g ;  v <- beta2 v + (1 - beta2) g^2
    u = m / (sqrt(v) / sqrt(1 - beta2^t) + eps)      (nesterov: m replaced by beta1 m + (1 - beta1) g)
Projection (Algorithm 2, for weights of 2+ dimensions): for the channel view (one row per output
channel), then the layer view (one row), if max |cos(g_row, theta_row)| < delta / sqrt(row size),
the weight is taken as scale-invariant: u <- u - p_n * <p_n, u> per row with
p_n = theta / (||theta_row|| + eps), and weight decay is scaled by wd_ratio; the first view that
passes wins. Then (the official clovaai/AdamP code):
    theta <- theta * (1 - lr * wd * wd_ratio_or_1) ;  theta <- theta - lr / (1 - beta1^t) * u
Difference from the official code, none in the numbers: both views are computed and chosen with
torch.where, so the step makes no host sync (the official `if cos.max() < ...` syncs per weight).
"""

import math

import torch
import torch.nn.functional as F

from algobench import schedules
from algobench.workload import param_groups
from submissions._foreach import closure_loss, group_tensors

PAPER = ("AdamP: Slowing Down the Slowdown for Momentum Optimizers on Scale-invariant Weights "
         "(Heo et al., ICLR 2021)")

REFERENCE = "clovaai/AdamP, adamp/adamp.py (adamp 0.3.0)"
EQUAL_UNDER = ("float64, nesterov on and off, the channel and the layer projection firing, None gradients (a "
               "tensor in a group of its own); tested in tests/test_reference_adaptive.py")
REFERENCE_TEST = "tests/test_reference_adaptive.py::test_adamp_equals_clovaai_adamp"
DIFFERENCES = [  # every deliberate difference from REFERENCE, with its reason
    ("The step count t is kept per parameter group, the release's per tensor: equal while every tensor of a group"
     " has a gradient at every step; a tensor whose gradient is None at some steps gets the group's t in its bias"
     " corrections."),
    ("The projection is chosen with torch.where (no host sync) instead of the release's `if cos.max() < ...`: the"
     " same numbers."),
    ("make_optimizer exempts biases and norms from weight decay (algobench.workload.param_groups); the release "
     "decays every tensor it is given."),
]

HPARAMS = {
    "learning_rate": 3e-3,
    "beta1": 0.9,
    "beta2": 0.999,
    "eps": 1e-8,
    "weight_decay": 0.1,
    "delta": 0.1,
    "wd_ratio": 0.1,
    "nesterov": False,
    "warmup_frac": 0.05,
    "grad_clip": 1.0,
}

SEARCH_SPACE = {  # the authors' defaults: betas (0.9, 0.999), delta 0.1, wd_ratio 0.1
    "learning_rate": {"min": 3e-4, "max": 1e-2, "scaling": "log"},
    "beta2": {"feasible_points": [0.999, 0.99, 0.95]},
    "weight_decay": {"min": 1e-3, "max": 0.3, "scaling": "log"},
    "delta": {"feasible_points": [0.1]},
    "wd_ratio": {"feasible_points": [0.1]},
    "nesterov": {"feasible_points": [False, True]},
    "warmup_frac": {"feasible_points": [0.02, 0.05, 0.1]},
}


def radial_projection(p: torch.Tensor, grad: torch.Tensor, update: torch.Tensor, *, delta: float,
                      wd_ratio: float, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(`update` without its radial component if `p` looks scale-invariant, the weight-decay
    multiplier: wd_ratio or 1 as a 0-dim tensor). Channel view first, then layer view."""
    expand = (-1,) + (1,) * (p.dim() - 1)
    views = (lambda x: x.reshape(x.size(0), -1), lambda x: x.reshape(1, -1))
    chosen, decay, taken = update, torch.ones((), dtype=p.dtype, device=p.device), None
    for view in views:
        cosine = F.cosine_similarity(view(grad), view(p), dim=1, eps=eps).abs()
        invariant = cosine.max() < delta / math.sqrt(view(p).size(1))
        if taken is not None:  # an earlier view already passed: it wins
            invariant = invariant & ~taken
        p_n = p / view(p).norm(dim=1).view(expand).add(eps)
        projected = update - p_n * view(p_n * update).sum(dim=1).view(expand)
        chosen = torch.where(invariant, projected, chosen)
        decay = torch.where(invariant, torch.full_like(decay, wd_ratio), decay)
        taken = invariant if taken is None else taken | invariant
    return chosen, decay


class AdamP(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, delta: float = 0.1, wd_ratio: float = 0.1, nesterov: bool = False) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, delta=delta,
                                      wd_ratio=wd_ratio, nesterov=nesterov))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            params, grads, (m, v) = group_tensors(self, group, ("exp_avg", "exp_avg_sq"))
            if not params:
                continue
            group["step"] = t = group.get("step", 0) + 1
            beta1, beta2 = group["betas"]
            lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]

            torch._foreach_lerp_(m, grads, 1 - beta1)
            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, grads, grads, value=1 - beta2)
            denom = torch._foreach_sqrt(v)
            torch._foreach_div_(denom, math.sqrt(1 - beta2**t))
            torch._foreach_add_(denom, eps)
            numer = torch._foreach_lerp(m, grads, 1 - beta1) if group["nesterov"] else m
            updates = list(torch._foreach_div(numer, denom))

            for i, (p, g) in enumerate(zip(params, grads)):
                decay = 1.0
                if p.dim() > 1:
                    updates[i], decay = radial_projection(p, g, updates[i], delta=group["delta"],
                                                          wd_ratio=group["wd_ratio"], eps=eps)
                if wd > 0:
                    p.mul_(1 - lr * wd * decay)
            torch._foreach_add_(params, updates, alpha=-lr / (1 - beta1**t))
        return loss


def make_optimizer(*, model, hparams, workload) -> torch.optim.Optimizer:
    return AdamP(param_groups(model, workload, weight_decay=hparams.weight_decay), lr=hparams.learning_rate,
                 betas=(hparams.beta1, hparams.beta2), eps=hparams.eps, delta=hparams.delta,
                 wd_ratio=hparams.wd_ratio, nesterov=hparams.nesterov)


lr_schedule = schedules.lr_schedule("warmup_cosine", warmup="warmup_frac")
