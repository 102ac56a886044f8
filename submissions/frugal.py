"""FRUGAL: gradient splitting into a state-full subspace (Adam) that rotates every T steps and a
state-free rest (signSGD) (Zmushko et al., 2024), with linear warmup and cosine decay.

Algorithm 1 of the paper for the hidden weight matrices (`workload.param_types` WEIGHT, 2-D, not
the head; see submissions/_matrix.py); the paper's names -> the code's:
    every T steps (`update_gap`), at steps 0, T, 2T, ...: choose the subspace P and reset the
        Adam state in it (m = v = 0, s = 0), the paper's "reset statistics"
    g_full = P(g) (state-full part),  g_free = g - P(g) (state-free part)
    s <- s + 1 ; m = beta1 m + (1 - beta1) g_full ; v = beta2 v + (1 - beta2) g_full^2
    W <- W (1 - lr wd) - lr / (1 - beta1^s) m / (sqrt(v) / sqrt(1 - beta2^s) + eps)
                       - lr * `state_free_lr_scale` * sign(g_free)
Subspaces (`projection`): "block" (the paper's choice for pre-training): a fraction `density` of
the matrices, taken in `block_order` (descending from the last layer, ascending or random) is the
state-full part and the others are updated by signSGD; "svd" (GaLore-like): for each matrix, the
top round(density * d) singular vectors of the gradient on its shorter side (P(g) = g V_r^T V_r
or U_r U_r^T g), Adam state of shape r x d. Embeddings, norms, biases and the head are always
state-full (plain AdamW, as the paper and its `prepare_proj_params` do), with the same lr.

Conventions from the authors' code (frugal/proj_optimizer_templates.py, frugal/adamw.py and
frugal/galore_projector.py; compared step for step in tests/test_reference_frugal.py): decoupled decay
lr * wd on every tensor of a group, state-full or state-free, before its update; eps after sqrt;
rotations at steps 0, T, 2T, ... that restart the bias correction and free the state of the
matrices that leave the subspace; blocks taken in the order of the group's tensors, the descending
order starting from the last; "svd" projects on the right (g V_r^T V_r) when rows >= cols, else on
the left, with the rank and the block count rounded as Python's round(). Deliberate differences
(DIFFERENCES): "random" order draws from a generator seeded by (seed, rotation) instead of the
global RNG, so runs and resumes are reproducible; ranks and block counts are at least 1; step counts
are the group's, not each tensor's; the SVD runs in float32 or the parameters' wider dtype (the
authors' always in float32); conv filters are flattened to (out, in * kh * kw) for "svd".

Defaults: the paper's scripts use lr 1e-3 for both parts (`inactive_lr_scale` 1.0). At this
workload's lr of 3e-3 the signSGD part was too coarse (GPT-2 smoke, 200 steps: val_loss 4.26 with
scale 1.0, 4.11 with 0.3, 4.01 with 0.1, AdamW 4.06), so its lr is 0.1x the Adam part's here.
"""

import math

import torch

from algobench import schedules
from submissions._matrix import adamw_step, as_matrix, split_groups

PAPER = "FRUGAL: Memory-Efficient Optimization by Reducing State Overhead for Scalable Training (Zmushko et al., 2024)"

REFERENCE = ("Zmushko et al., FRUGAL (github.com/philip-zmushko/FRUGAL, read from its copy hungquangbui02022003/FRUGAL): "
             "frugal/proj_optimizer_templates.py (ProjOptimizer.step, BlockOptimizer, GaloreOptimizer; commit 6d7bf46), "
             "frugal/adamw.py (AdamW._compute_update, BlockAdamW, GaloreAdamW) and frugal/galore_projector.py "
             "(GaLoreProjector, proj_side='std', proj_type='svd'; commit 08f5142)")
EQUAL_UNDER = ("float64 (the authors' float32 SVD cast replaced by float64), 100 steps at a constant lr, a rotation every"
               " 10 steps, proj_params_lr_scale 1, inactive_update_rule 'sign_sgd', reset_statistics on, "
               "state-free lr scale 0.1 and 1.0, 'block' in the orders descending, ascending and random (the "
               "authors' global RNG reseeded with the submission's per-rotation seed) with a conv filter as a block,"
               " 'svd' on tall, wide and square matrices, weight decay on, a None gradient in an AdamW group of its "
               "own; tested in tests/test_reference_frugal.py (and the paper's Algorithm 1 in "
               "tests/test_library_advanced.py)")
REFERENCE_TEST = "tests/test_reference_frugal.py::test_frugal_equals_the_authors_frugal_adamw"
DIFFERENCES = [  # every deliberate difference from REFERENCE, with its reason
    ("The random block order draws from a generator seeded by (seed, rotation) instead of the global RNG "
     "(BlockOptimizer._update_states: torch.randperm), so runs and resumes are reproducible."),
    "Ranks (svd) and block counts are at least 1; the authors' round(n * density) may be 0.",
    ("Step counts (bias correction, rotation timing) are the group's; the authors' are per tensor and the rotation is "
     "due when the group's first tensor's count is a multiple of update_gap. Equal while every matrix has a gradient "
     "at every step (the authors' svd rotation reads every matrix's gradient and fails on None)."),
    ("The SVD runs in float32 or in the parameters' dtype if wider; the authors' GaLoreProjector casts to float32 "
     "(`.float()`) for any other dtype. Equal for float32, bfloat16 and float16 parameters."),
    ("'svd' flattens a conv filter to (out, in * kh * kw); the authors project only nn.Linear weights "
     "(prepare_proj_params), and their GaLoreProjector is written for 2-D gradients."),
    ("Only proj_params_lr_scale = 1, inactive_update_rule = 'sign_sgd', reset_statistics = True and "
     "proj_side = 'std' are offered (the paper's pre-training settings); not the 'mirror' order, Lion/SGD as "
     "the state-full part, or the coordinate (RandK) projection."),
    ("make_optimizer splits the hidden weight matrices (every 2-D+ WEIGHT but the head) and exempts biases and norms "
     "from weight decay (submissions/_matrix.py split_groups); the authors split the nn.Linear weights of attention "
     "and MLP modules and pass one weight_decay to every parameter."),
    ("The state-free (signSGD) part's lr is 0.1x the Adam part's by default (state_free_lr_scale = 0.1); the "
     "authors' default inactive_lr_scale is 1.0."),
]

HPARAMS = {
    "learning_rate": 3e-3,
    "beta1": 0.9,
    "beta2": 0.999,
    "eps": 1e-8,
    "weight_decay": 0.0,
    "density": 0.25,
    "update_gap": 200,
    "projection": "block",
    "block_order": "descending",
    "state_free_lr_scale": 0.1,
    "warmup_frac": 0.05,
}

SEARCH_SPACE = {
    "learning_rate": {"min": 1e-3, "max": 1e-2, "scaling": "log"},
    "beta2": {"feasible_points": [0.95, 0.999]},
    "weight_decay": {"feasible_points": [0.0, 0.1]},
    "density": {"feasible_points": [0.125, 0.25, 0.5]},
    "update_gap": {"feasible_points": [100, 200, 400]},
    "projection": {"feasible_points": ["block", "svd"]},
    "state_free_lr_scale": {"feasible_points": [0.1, 0.3, 1.0]},
    "warmup_frac": {"feasible_points": [0.02, 0.05, 0.1]},
}

ORDERS = ("descending", "ascending", "random")


class Frugal(torch.optim.Optimizer):
    """Groups with `use_matrix=True` are split (state-full subspace + signSGD); others get AdamW."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, density: float = 0.25, update_gap: int = 200, projection: str = "block",
                 block_order: str = "descending", state_free_lr_scale: float = 1.0, seed: int = 0) -> None:
        if projection not in ("block", "svd"):
            raise ValueError(f"projection must be 'block' or 'svd', got {projection!r}")
        if block_order not in ORDERS:
            raise ValueError(f"block_order must be one of {ORDERS}, got {block_order!r}")
        if not 0.0 < density <= 1.0 or update_gap < 1:
            raise ValueError(f"need 0 < density <= 1 and update_gap >= 1, got {density}, {update_gap}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                                  "density": density, "update_gap": update_gap, "projection": projection,
                                  "block_order": block_order, "state_free_lr_scale": state_free_lr_scale,
                                  "seed": seed, "use_matrix": False})

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
            if not group["use_matrix"]:
                group["step"] = group.get("step", 0) + 1
                for p in params:
                    if not self.state[p]:
                        self.state[p].update(exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                adamw_step(params, [p.grad for p in params], [self.state[p]["exp_avg"] for p in params],
                           [self.state[p]["exp_avg_sq"] for p in params], step=group["step"], lr=group["lr"],
                           betas=group["betas"], eps=group["eps"], weight_decay=group["weight_decay"])
                continue
            if group.get("step", 0) % group["update_gap"] == 0:
                self._rotate(group)
            group["step"] = group.get("step", 0) + 1
            group["adam_step"] = group.get("adam_step", 0) + 1
            if group["weight_decay"]:
                torch._foreach_mul_(params, 1 - group["lr"] * group["weight_decay"])
            if group["projection"] == "block":
                self._block_step(group, params)
            else:
                self._svd_step(group, params)
        return loss

    # --- choosing the state-full subspace -----------------------------------------------------
    def _rotate(self, group: dict) -> None:
        params = group["params"]
        for p in params:
            self.state[p].clear()
        group["adam_step"] = 0
        if group["projection"] == "svd":  # projectors are taken from each matrix's next gradient
            return
        for i in self._next_blocks(group):
            self.state[params[i]].update(exp_avg=torch.zeros_like(params[i]), exp_avg_sq=torch.zeros_like(params[i]))

    def _next_blocks(self, group: dict) -> list[int]:
        n = len(group["params"])
        k = max(1, round(n * group["density"]))
        order = group["block_order"]
        if order == "random":
            rotation = group.get("step", 0) // group["update_gap"]
            gen = torch.Generator().manual_seed(group["seed"] * 1_000_003 + rotation)
            return torch.randperm(n, generator=gen)[:k].tolist()
        start = group.get("next_block_start", 0 if order == "ascending" else n - 1)
        sign = 1 if order == "ascending" else -1
        group["next_block_start"] = (start + sign * k) % n
        return [(start + sign * j) % n for j in range(k)]

    def _svd_projector(self, p: torch.Tensor, density: float) -> None:
        g = as_matrix(p.grad).to(torch.promote_types(p.dtype, torch.float32))  # no SVD in half precision
        U, _, Vh = torch.linalg.svd(g, full_matrices=False)
        rows, cols = g.shape
        if rows >= cols:  # right projection: low = g P^T, P of shape (r, cols)
            proj = Vh[:max(1, round(cols * density))]
            low_shape = (rows, len(proj))
        else:  # left projection: low = P^T g, P of shape (rows, r)
            proj = U[:, :max(1, round(rows * density))]
            low_shape = (proj.shape[1], cols)
        self.state[p].update(proj=proj.to(p.dtype), exp_avg=p.new_zeros(low_shape), exp_avg_sq=p.new_zeros(low_shape))

    # --- one step ----------------------------------------------------------------------------
    def _block_step(self, group: dict, params: list[torch.Tensor]) -> None:
        full = [p for p in params if "exp_avg" in self.state[p]]
        free = [p for p in params if "exp_avg" not in self.state[p]]
        if full:
            adamw_step(full, [p.grad for p in full], [self.state[p]["exp_avg"] for p in full],
                       [self.state[p]["exp_avg_sq"] for p in full], step=group["adam_step"], lr=group["lr"],
                       betas=group["betas"], eps=group["eps"], weight_decay=0.0)
        if free:
            torch._foreach_add_(free, torch._foreach_sign([p.grad for p in free]),
                                alpha=-group["lr"] * group["state_free_lr_scale"])

    def _svd_step(self, group: dict, params: list[torch.Tensor]) -> None:
        beta1, beta2 = group["betas"]
        s, lr = group["adam_step"], group["lr"]
        for p in params:
            state = self.state[p]
            if "proj" not in state:
                self._svd_projector(p, group["density"])
            g, proj = as_matrix(p.grad), state["proj"]
            right = g.shape[0] >= g.shape[1]  # as chosen in _svd_projector
            low = g @ proj.T if right else proj.T @ g
            m, v = state["exp_avg"], state["exp_avg_sq"]
            m.lerp_(low, 1 - beta1)
            v.mul_(beta2).addcmul_(low, low, value=1 - beta2)
            adam = m / (v.sqrt() / math.sqrt(1 - beta2**s) + group["eps"])
            up, low_up = (adam @ proj, low @ proj) if right else (proj @ adam, proj @ low)
            update = up.mul_(lr / (1 - beta1**s)).add_(torch.sign(g - low_up), alpha=lr * group["state_free_lr_scale"])
            p.sub_(update.view_as(p))


def make_optimizer(*, model, hparams, workload) -> torch.optim.Optimizer:
    groups = split_groups(model, workload, weight_decay=hparams.weight_decay, adam_weight_decay=hparams.weight_decay,
                          adam_lr_scale=1.0)
    return Frugal(groups, lr=hparams.learning_rate, betas=(hparams.beta1, hparams.beta2), eps=hparams.eps,
                  density=hparams.density, update_gap=hparams.update_gap, projection=hparams.projection,
                  block_order=hparams.block_order, state_free_lr_scale=hparams.state_free_lr_scale)


lr_schedule = schedules.lr_schedule("warmup_cosine", warmup="warmup_frac")
