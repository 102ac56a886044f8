"""Schedule-Free AdamW (Defazio et al., 2024), AlgoPerf 2024's self-tuning winner. Full form: the
gradient is taken at y, evaluation uses x, so the parameters are swapped around evaluations.

Paper (Algorithm 1; beta1, beta2 as in code), with z the SGD-like sequence and x the average:
    y_t = (1 - beta1) z_t + beta1 x_t                 (the model's parameters while training)
    v_t = beta2 v_{t-1} + (1 - beta2) g_t^2,   g_t the gradient at y_t
    lr_t = lr * min(1, t / warmup_steps)
    u_t = g_t / (sqrt(v_t / (1 - beta2^t)) + eps) + wd * y_t          (decay computed at y)
    z_{t+1} = z_t - lr_t * u_t
    c_{t+1} = w_t / sum_{i<=t} w_i,   w_t = t^r * max_{i<=t}(lr_i)^weight_lr_power
    x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}
Code: the authors' released package, schedulefree 1.4.1 (`schedulefree/adamw_schedulefree.py`,
`AdamWScheduleFree`, the same update as its 1.3): only z and v are stored (8 bytes per parameter);
y is updated in place, y <- lerp(y, z, c) + lr_t (beta1 (1 - c) - 1) u, and x is recovered for
evaluation as lerp(y, z, 1 - 1/beta1) (`prepare_for_eval`), y again as lerp(x, z, 1 - beta1) at the
next update. Earlier releases (1.2.x) put sqrt(1 - beta2^t) into lr_t (so also into lr_max, the
weights and the decay) and eps outside the un-corrected sqrt(v); the AlgoPerf 2024 submission's own
copy differs again (decay at x). Hyperparameters are the AlgoPerf winner's (lr 0.0025, beta2
0.9955, wd 0.08, 2% warmup, r 0.75, weight_lr_power 2). Differences from AlgoPerf's submission:
its update rule (above); weight decay skips biases and norms; the gradient is clipped to
`grad_clip` (AlgoPerf's did not clip); no "reset on divergence" heuristic; warmup over
warmup_factor * step_hint (AlgoPerf's: times 0.75); v in the parameters' dtype (AlgoPerf's:
bfloat16).
"""


import torch

from algobench.workload import param_groups

PAPER = "The Road Less Scheduled (Defazio et al., NeurIPS 2024); AlgoPerf 2024 self-tuning winner"

REFERENCE = "facebookresearch/schedule_free, schedulefree/adamw_schedulefree.py (schedulefree 1.4.1)"
EQUAL_UNDER = ("float64, warmup and r on and off, weight decay, evaluations (eval/train swaps) mid-run, the "
               "evaluation point x, None gradients in a group with gradients; tested in "
               "tests/test_reference_adaptive.py")
REFERENCE_TEST = "tests/test_reference_adaptive.py::test_schedule_free_equals_schedulefree_1_4_1"
DIFFERENCES = [  # every deliberate difference from REFERENCE, with its reason
    ("A step() at which no tensor of a group has a gradient does not advance the group's k (nor lr_max, "
     "weight_sum); the release's does."),
    ("Not the AlgoPerf 2024 submission's own copy of the optimizer (its decay is at x and scaled by sqrt(1 - "
     "beta2^t), v in bfloat16, warmup times 0.75, a reset-on-divergence rule): only its hyperparameters are used."),
    "The gradient is clipped to grad_clip by the harness (AlgoPerf's submission did not clip).",
    ("make_optimizer exempts biases and norms from weight decay (algobench.workload.param_groups); the release "
     "decays every tensor it is given."),
]

HPARAMS = {
    "learning_rate": 2.5e-3,
    "one_minus_beta1": 0.1,
    "beta2": 0.9955,
    "eps": 1e-8,
    "weight_decay": 0.08,
    "warmup_factor": 0.02,
    "r": 0.75,
    "weight_lr_power": 2.0,
    "grad_clip": 1.0,
}

SEARCH_SPACE = {  # around the AlgoPerf submission's values (its external-tuning points)
    "learning_rate": {"min": 5e-4, "max": 1e-2, "scaling": "log"},
    "one_minus_beta1": {"feasible_points": [0.1, 0.05]},
    "beta2": {"feasible_points": [0.9955, 0.999, 0.95]},
    "weight_decay": {"min": 1e-3, "max": 0.3, "scaling": "log"},
    "warmup_factor": {"feasible_points": [0.02, 0.05]},
    "r": {"feasible_points": [0.75, 0.0]},
}


class AdamWScheduleFree(torch.optim.Optimizer):
    """Call `eval()` before evaluating and `train()` before training (the params hold y or x)."""

    def __init__(self, params, lr: float = 0.0025, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, warmup_steps: int = 0, r: float = 0.0,
                 weight_lr_power: float = 2.0) -> None:
        if not 0.0 < betas[0] < 1.0:  # eval divides by beta1
            raise ValueError(f"Schedule-Free beta1 must lie in (0, 1): {betas[0]}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      warmup_steps=warmup_steps, r=r, weight_lr_power=weight_lr_power,
                                      k=0, weight_sum=0.0, lr_max=-1.0, train_mode=True))

    @torch.no_grad()
    def _swap(self, to_train: bool) -> None:
        for group in self.param_groups:
            if group["train_mode"] == to_train:
                continue
            beta1 = group["betas"][0]
            params = [p for p in group["params"] if "z" in self.state[p]]
            if params:
                weight = 1 - beta1 if to_train else 1 - 1 / beta1  # x -> y, or y -> x
                torch._foreach_lerp_(params, [self.state[p]["z"] for p in params], weight)
            group["train_mode"] = to_train

    def eval(self) -> None:
        self._swap(to_train=False)

    def train(self) -> None:
        self._swap(to_train=True)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if not group["train_mode"]:
                raise RuntimeError("Schedule-Free step in eval mode: call optimizer.train() first")
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            beta1, beta2 = group["betas"]
            k = group["k"]
            warmup = (k + 1) / group["warmup_steps"] if k < group["warmup_steps"] else 1.0
            lr = group["lr"] * warmup
            bias2 = 1 - beta2 ** (k + 1)
            group["lr_max"] = lr_max = max(lr, group["lr_max"])
            weight = (k + 1) ** group["r"] * lr_max ** group["weight_lr_power"]
            group["weight_sum"] += weight
            ckp1 = weight / group["weight_sum"] if group["weight_sum"] else 0.0

            for p in params:
                if "z" not in self.state[p]:
                    self.state[p]["z"] = p.detach().clone()
                    self.state[p]["exp_avg_sq"] = torch.zeros_like(p)
            z = [self.state[p]["z"] for p in params]
            v = [self.state[p]["exp_avg_sq"] for p in params]
            grads = [p.grad for p in params]

            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, grads, grads, value=1 - beta2)
            denom = torch._foreach_div(v, bias2)
            torch._foreach_sqrt_(denom)
            torch._foreach_add_(denom, group["eps"])
            normalized = torch._foreach_div(grads, denom)
            if group["weight_decay"]:
                torch._foreach_add_(normalized, params, alpha=group["weight_decay"])  # decay at y
            torch._foreach_lerp_(params, z, ckp1)
            torch._foreach_add_(params, normalized, alpha=lr * (beta1 * (1 - ckp1) - 1))
            torch._foreach_sub_(z, normalized, alpha=lr)
            group["k"] = k + 1
        return loss


def init_optimizer_state(*, workload, model_params, model_state, hyperparameters, rng):
    hp = hyperparameters
    groups = param_groups(model_params, workload, weight_decay=hp.weight_decay)
    optimizer = AdamWScheduleFree(groups, lr=hp.learning_rate, betas=(1.0 - hp.one_minus_beta1, hp.beta2),
                                  eps=hp.eps, warmup_steps=int(hp.warmup_factor * workload.step_hint),
                                  r=hp.r, weight_lr_power=hp.weight_lr_power)
    return {"optimizer": optimizer}


def update_params(*, workload, current_param_container, current_params_types, model_state, hyperparameters,
                  batch, loss_type, optimizer_state, eval_results, global_step, rng):
    optimizer = optimizer_state["optimizer"]
    model = current_param_container
    optimizer.train()  # back to y after an evaluation (a no-op otherwise)
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = workload.loss(model, batch)
    loss.backward()
    if getattr(hyperparameters, "grad_clip", None):
        torch.nn.utils.clip_grad_norm_(model.parameters(), hyperparameters.grad_clip)
    optimizer.step()
    return optimizer_state, model, model_state, loss.detach()


def prepare_for_eval(*, workload, current_param_container, current_params_types, model_state, hyperparameters,
                     loss_type, optimizer_state, eval_results, global_step, rng):
    optimizer_state["optimizer"].eval()  # the parameters now hold x, the averaged iterate
    return optimizer_state, current_param_container, model_state
