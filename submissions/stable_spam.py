"""Stable-SPAM: Adam with spike-aware adaptive clipping, adaptive gradient-norm scaling and
periodic momentum reset (Huang et al., 2025), with linear warmup and cosine decay.

Algorithm 1 of the paper, per parameter tensor, t the global step (the paper's names -> code):
    g_max = max_i |g_t[i]|
    T_t   = theta T_{t-1} + (1 - theta) g_max ;  T_hat = T_t / (1 - theta^t)     (theta = `theta`)
    AdaClip: g_t[i] <- g_t[i] / g_max * T_hat  where |g_t[i]| > T_hat
    n_t   = ||g_t||_2
    AdaGN: mu_t = gamma1 mu_{t-1} + (1 - gamma1) n_t ;  nu_t = gamma2 nu_{t-1} + (1 - gamma2) n_t^2
           g_hat = g_t / n_t * mu_hat / (sqrt(nu_hat) + eps)   (mu_hat, nu_hat bias-corrected by t)
    reset: if t mod DeltaT == 0 (`reset_interval`): m <- 0, v <- 0, s <- 0
    Adam:  s <- s + 1 ; m = beta1 m + (1 - beta1) g_hat ; v = beta2 v + (1 - beta2) g_hat^2
           theta_t = theta_{t-1} (1 - lr wd) - lr / (1 - beta1^s) * m / (sqrt(v) / sqrt(1 - beta2^s) + eps)
Conventions from the authors' code (TianjinYellow/StableSPAM, `stablespam.py`): decoupled decay
first, eps after the square roots, the clip statistics and the norm moments are per tensor, the
reset is on the optimizer's global step count. All statistics stay on the device (no host sync).

Deliberate differences from that code: (1) it shares one per-tensor step counter between the
Adam bias correction and the AdaClip/AdaGN bias corrections, and resets it with the moments, so
after every reset the clip threshold T_hat is divided by 1 - theta^2 (about 500x) and clipping is
off for hundreds of steps; we keep the global t for AdaClip/AdaGN and restart only Adam's s.
(2) On a reset step it still applies the stale moments through an aliased reference and starts
the fresh ones one step later; we reset, then update with the fresh moments. Before the first
reset both give the same steps. (3) Its optional cosine scaling of beta1/gamma1 (`total_T`) and
AMSGrad are not offered (off by default there).
"""

import math

import torch

from algobench import schedules
from algobench.workload import param_groups

PAPER = "Stable-SPAM: How to Train in 4-Bit More Stably than 16-Bit Adam (Huang et al., 2025)"

REFERENCE = ("TianjinYellow/StableSPAM, stablespam.py (class StableSPAM, total_T=None, amsgrad off; read from a "
             "published copy of the file, the commit is not pinned)")
EQUAL_UNDER = ("float64, before the first momentum reset (reset_interval 0 or beyond the run), gradient spikes "
               "clipped, weight decay on and off, None gradients (a tensor in a group of its own); tested in "
               "tests/test_reference_adaptive.py")
REFERENCE_TEST = "tests/test_reference_adaptive.py::test_stable_spam_equals_the_release_before_the_first_reset"
DIFFERENCES = [  # every deliberate difference from REFERENCE, with its reason
    ("After a reset the release restarts the one per-tensor step count shared by AdaClip, AdaGN and Adam, so the "
     "clip threshold is divided by 1 - theta^2 and clipping is off for hundreds of steps; this keeps the global t"
     " for AdaClip/AdaGN and restarts only Adam's count."),
    ("On a reset step the release still applies the stale moments (an aliased reference) and starts the fresh "
     "ones a step later; this resets, then updates with the fresh moments."),
    "No cosine scaling of beta1/gamma1 (total_T) and no AMSGrad (both off by default in the release).",
    ("The step count t is kept per parameter group, the release's per tensor: equal while every tensor of a group"
     " has a gradient at every step; a tensor whose gradient is None at some steps gets the group's t in its bias"
     " corrections."),
    ("make_optimizer exempts biases and norms from weight decay (algobench.workload.param_groups); the release "
     "decays every tensor it is given."),
]

HPARAMS = {
    "learning_rate": 3e-3,
    "beta1": 0.9,
    "beta2": 0.999,
    "eps": 1e-8,
    "gamma1": 0.7,
    "gamma2": 0.9,
    "theta": 0.999,
    "reset_interval": 500,
    "weight_decay": 0.0,
    "warmup_frac": 0.05,
}

SEARCH_SPACE = {
    "learning_rate": {"min": 1e-3, "max": 1e-2, "scaling": "log"},
    "beta2": {"feasible_points": [0.95, 0.999]},
    "gamma1": {"feasible_points": [0.7, 0.85]},
    "gamma2": {"feasible_points": [0.9, 0.999, 0.99999]},
    "reset_interval": {"feasible_points": [250, 500, 1000]},
    "weight_decay": {"feasible_points": [0.0, 0.1]},
    "warmup_frac": {"feasible_points": [0.02, 0.05, 0.1]},
}


class StableSPAM(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, gamma1: float = 0.7, gamma2: float = 0.9, theta: float = 0.999,
                 reset_interval: int = 500) -> None:
        if reset_interval < 0:
            raise ValueError(f"reset_interval must be >= 0 (0: never), got {reset_interval}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "gamma1": gamma1,
                                      "gamma2": gamma2, "theta": theta, "reset_interval": reset_interval})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._group_step(group, params)
        return loss

    def _group_step(self, group: dict, params: list[torch.Tensor]) -> None:
        for p in params:
            state = self.state[p]
            if not state:
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
                stat_dtype = torch.promote_types(p.dtype, torch.float32)  # at least fp32 for bf16 params
                for key in ("clip_max", "norm_mean", "norm_sq_mean"):  # T, mu, nu: one scalar per tensor
                    state[key] = torch.zeros((), device=p.device, dtype=stat_dtype)
        t = group["step"] = group.get("step", 0) + 1
        beta1, beta2 = group["betas"]
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        gamma1, gamma2, theta = group["gamma1"], group["gamma2"], group["theta"]
        state = [self.state[p] for p in params]
        grads = [p.grad for p in params]

        if wd:
            torch._foreach_mul_(params, 1 - lr * wd)

        # AdaClip: rescale spiked entries to the bias-corrected running max.
        g_max = [m.to(s["clip_max"].dtype) for m, s in zip(torch._foreach_norm(grads, ord=math.inf), state)]
        clip_max = [s["clip_max"] for s in state]
        torch._foreach_lerp_(clip_max, g_max, 1 - theta)
        threshold = torch._foreach_div(clip_max, 1 - theta**t)
        grads = [torch.where(g.abs() > th, g * (th / gm).to(g.dtype), g)
                 for g, th, gm in zip(grads, threshold, g_max)]

        # AdaGN: the direction of g, the magnitude of the running norm statistics.
        norm = [n.to(s["norm_mean"].dtype) for n, s in zip(torch._foreach_norm(grads), state)]
        mu, nu = [s["norm_mean"] for s in state], [s["norm_sq_mean"] for s in state]
        torch._foreach_lerp_(mu, norm, 1 - gamma1)
        torch._foreach_mul_(nu, gamma2)
        torch._foreach_addcmul_(nu, norm, norm, value=1 - gamma2)
        nu_hat = torch._foreach_div(nu, 1 - gamma2**t)
        torch._foreach_sqrt_(nu_hat)
        torch._foreach_add_(nu_hat, eps)
        scale = torch._foreach_div(torch._foreach_div(mu, 1 - gamma1**t), nu_hat)
        scale = [torch.where(n > 0, c / n, torch.zeros_like(c)) for c, n in zip(scale, norm)]
        grads = torch._foreach_mul(grads, [c.to(g.dtype) for c, g in zip(scale, grads)])

        # Momentum reset every reset_interval steps, then Adam on the stabilized gradient.
        m, v = [s["exp_avg"] for s in state], [s["exp_avg_sq"] for s in state]
        if group["reset_interval"] and t % group["reset_interval"] == 0:
            torch._foreach_zero_(m)
            torch._foreach_zero_(v)
            group["adam_step"] = 0
        s = group["adam_step"] = group.get("adam_step", 0) + 1
        torch._foreach_lerp_(m, grads, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - beta2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, math.sqrt(1 - beta2**s))
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, m, denom, value=-lr / (1 - beta1**s))


def make_optimizer(*, model, hparams, workload) -> torch.optim.Optimizer:
    return StableSPAM(param_groups(model, workload, weight_decay=hparams.weight_decay), lr=hparams.learning_rate,
                      betas=(hparams.beta1, hparams.beta2), eps=hparams.eps, gamma1=hparams.gamma1,
                      gamma2=hparams.gamma2, theta=hparams.theta, reset_interval=hparams.reset_interval)


lr_schedule = schedules.lr_schedule("warmup_cosine", warmup="warmup_frac")
