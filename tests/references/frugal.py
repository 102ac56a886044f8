"""FRUGAL as its authors released it, for tests/test_reference_frugal.py. Nothing here imports
algobench or the submissions.

Source: the authors' repository (Zmushko et al., github.com/philip-zmushko/FRUGAL), read from the
copy hungquangbui02022003/FRUGAL in the public-code index: `frugal/proj_optimizer_templates.py` at
commit 6d7bf46 (the version before that fork added dynamic rho/T; evseevgrv/SignSGD_GoldenGate holds
the same update rule with the rotation counter moved to the group), `frugal/adamw.py` and
`frugal/galore_projector.py` at commit 08f5142.

Transcribed, in the authors' order of operations:
- adamw.py `AdamW._init_state` and `AdamW._compute_update` (correct_bias=True);
- proj_optimizer_templates.py `ProjOptimizer.step` and `_update_states_if_necessary` (the rotation
  is due when the first tensor's per-tensor step count is a multiple of update_gap), and the
  group options `proj_params_lr_scale`, `inactive_update_rule`, `inactive_lr_scale`,
  `reset_statistics`, `_example_state_init`;
- `BlockOptimizer` (`num_active_blocks = round(n * density)`, `_activate_param`,
  `_deactivate_param`, `_update_states` for the orders random/ascending/descending,
  `_proj_params_update`) as `BlockAdamW(BlockOptimizer, AdamW)`;
- `GaloreOptimizer` (`_update_states`, `_proj_params_update`) with galore_projector.py's
  `GaLoreProjector` for proj_side="std", proj_type="svd" only, as `GaloreAdamW`.
Left out: Lion/SGD as the state-full part, CoordOptimizer, the "mirror" order, the random and
randperm projections, proj_side other than "std", sparse-gradient errors, the deprecation warning.

One change, as tests/references/matrix.py does for Muon's bfloat16: `GaLoreProjector` computes the
SVD in float32 for every other dtype (`matrix = module_params.data.float()`, the projector cast back);
that cast is `svd_dtype` here, torch.float32 by default as in the authors' code, and the float64
tests pass torch.float64.
"""

from __future__ import annotations

import math

import torch
from torch.optim import Optimizer


class AdamW(Optimizer):
    """adamw.py `AdamW`: per-tensor step count, decoupled decay applied in `step`, eps after sqrt."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, correct_bias=True):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                                  "correct_bias": correct_bias})

    def _is_state_empty(self, state):
        return any(key not in state for key in ["step", "exp_avg", "exp_avg_sq"])

    @torch.no_grad()
    def _init_state(self, example=None, state=None):
        if state is not None and not self._is_state_empty(state):
            state["step"] = 0
            state["exp_avg"].zero_()
            state["exp_avg_sq"].zero_()
        else:
            if state is None:
                state = {}
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(example)
            state["exp_avg_sq"] = torch.zeros_like(example)
        return state

    @torch.no_grad()
    def _compute_update(self, grad, state, lr, betas, eps, correct_bias, **kwargs):
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        beta1, beta2 = betas
        exp_avg.mul_(beta1).add_(grad, alpha=(1.0 - beta1))
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        denom = exp_avg_sq.sqrt()
        step_size = lr
        if correct_bias:
            bias_correction1 = 1.0 - beta1 ** state["step"]
            bias_correction2 = 1.0 - beta2 ** state["step"]
            step_size = lr / bias_correction1
            denom.div_(math.sqrt(bias_correction2))  # `_dispatch_sqrt` of a float
        denom.add_(eps)
        return exp_avg / denom * (-step_size)


PROJ_DEFAULTS = {"proj_params_lr_scale": 1.0, "update_gap": 200, "density": 0.25, "reset_statistics": True,
                 "inactive_update_rule": "sign_sgd", "inactive_lr_scale": 1.0, "_example_state_init": False}


class ProjOptimizer:
    """proj_optimizer_templates.py `ProjOptimizer`: the group with `is_proj_params` is split."""

    @staticmethod
    def _proj_groups(params: list[dict], **proj_args) -> list[dict]:
        for group in params:
            if group.get("is_proj_params", False):
                for k, v in {**PROJ_DEFAULTS, **proj_args}.items():
                    group.setdefault(k, v)
        return params

    def is_proj_group(self, group):
        return "is_proj_params" in group and group["is_proj_params"]

    @torch.no_grad()
    def _update_states_if_necessary(self, group):
        for p in group["params"]:
            if "step" in self.state[p] and self.state[p]["step"] % group["update_gap"]:
                return
            else:
                break
        self._update_states(group)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            loss = closure()
        for group in self.param_groups:
            if self.is_proj_group(group):
                self._update_states_if_necessary(group)
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if len(state) == 0:
                    self._init_state(example=p, state=state)
                p.mul_(1 - group["lr"] * group["weight_decay"])
                state["step"] += 1
                if not self.is_proj_group(group):
                    update = self._compute_update(grad, state, **group)
                else:
                    update = self._proj_params_update(grad, state, group)
                p.add_(update)
        return loss


class BlockOptimizer(ProjOptimizer):
    """proj_optimizer_templates.py `BlockOptimizer`: whole tensors are state-full or state-free."""

    @torch.no_grad()
    def _activate_param(self, p):
        state = self.state[p]
        self._init_state(example=p, state=state)
        state["active"] = True

    @torch.no_grad()
    def _deactivate_param(self, p):
        state = self.state[p]
        state.clear()
        state["step"] = 0
        state["active"] = False

    @torch.no_grad()
    def _update_states(self, group):
        for p in group["params"]:
            self._deactivate_param(p)
        if group["block_order"] == "random":
            current_blocks = torch.randperm(len(group["params"]))[:group["num_active_blocks"]]
            for idx in current_blocks:
                self._activate_param(group["params"][idx])
        elif group["block_order"] == "ascending":
            if "next_block_start" not in group:
                group["next_block_start"] = 0
            for idx in range(group["next_block_start"], group["next_block_start"] + group["num_active_blocks"]):
                self._activate_param(group["params"][idx % len(group["params"])])
            group["next_block_start"] += group["num_active_blocks"]
            if group["next_block_start"] >= len(group["params"]):
                group["next_block_start"] -= len(group["params"])
        elif group["block_order"] == "descending":
            if "next_block_start" not in group:
                group["next_block_start"] = len(group["params"]) - 1
            for idx in range(group["next_block_start"], group["next_block_start"] - group["num_active_blocks"], -1):
                self._activate_param(group["params"][idx % len(group["params"])])
            group["next_block_start"] -= group["num_active_blocks"]
            if group["next_block_start"] < 0:
                group["next_block_start"] += len(group["params"])

    @torch.no_grad()
    def _proj_params_update(self, grad, state, group):
        if state["active"]:
            active_lr = group["lr"] * group["proj_params_lr_scale"]
            return self._compute_update(grad, state, **{**group, "lr": active_lr})
        elif group["inactive_update_rule"] == "no":
            return torch.zeros_like(grad)
        inactive_lr = group["lr"] * group["proj_params_lr_scale"] * group["inactive_lr_scale"]
        if group["inactive_update_rule"] == "sgd":
            return -inactive_lr * grad
        elif group["inactive_update_rule"] == "sign_sgd":
            return -inactive_lr * grad.sign()


class GaLoreProjector:
    """galore_projector.py `GaLoreProjector`, proj_side="std", proj_type="svd"."""

    def __init__(self, density, grad_shape, svd_dtype=torch.float32):
        self.ortho_matrix = None
        if grad_shape[0] >= grad_shape[1]:
            self.proj_side = "right"
            self.rank = round(grad_shape[1] * density)
        else:
            self.proj_side = "left"
            self.rank = round(grad_shape[0] * density)
        self.svd_dtype = svd_dtype

    def update_proj(self, full_rank_grad):
        self.ortho_matrix = self._get_orthogonal_matrix(full_rank_grad, self.rank, type=self.proj_side)

    def project_down(self, full_rank):
        if self.proj_side == "right":
            return torch.matmul(full_rank, self.ortho_matrix.t())
        return torch.matmul(self.ortho_matrix.t(), full_rank)

    def project_up(self, low_rank):
        if self.proj_side == "right":
            return torch.matmul(low_rank, self.ortho_matrix)
        return torch.matmul(self.ortho_matrix, low_rank)

    def _get_orthogonal_matrix(self, weights, rank, type):
        original_type = weights.data.dtype
        matrix = weights.data.to(self.svd_dtype)  # the authors': `.float()` unless already float32
        U, _, Vh = torch.linalg.svd(matrix, full_matrices=False)
        if type == "right":
            return Vh[:rank, :].type(original_type)
        return U[:, :rank].type(original_type)


class GaloreOptimizer(ProjOptimizer):
    """proj_optimizer_templates.py `GaloreOptimizer`: Adam in the top-r singular subspace of the
    gradient at each rotation, the residual by `inactive_update_rule`."""

    @torch.no_grad()
    def _update_states(self, group):
        for p in group["params"]:
            state = self.state[p]
            grad = p.grad
            if "projector" not in state:
                state["projector"] = GaLoreProjector(group["density"], grad_shape=grad.shape,
                                                     svd_dtype=group["svd_dtype"])
            state["projector"].update_proj(grad)
            if "step" not in state or group["reset_statistics"]:
                if len(state) == 1 or group["_example_state_init"]:
                    self._init_state(example=state["projector"].project_down(grad), state=state)
                else:
                    self._init_state(state=state)

    @torch.no_grad()
    def _proj_params_update(self, grad, state, group):
        grad_down = state["projector"].project_down(grad)
        active_lr = group["lr"] * group["proj_params_lr_scale"]
        update = self._compute_update(grad_down, state, **{**group, "lr": active_lr})
        update = state["projector"].project_up(update)
        if group["inactive_update_rule"] == "no":
            return update
        inactive_grad = grad - state["projector"].project_up(grad_down)
        inactive_lr = group["lr"] * group["proj_params_lr_scale"] * group["inactive_lr_scale"]
        if group["inactive_update_rule"] == "sgd":
            update.add_(-inactive_lr * inactive_grad)
        elif group["inactive_update_rule"] == "sign_sgd":
            update.add_(-inactive_lr * inactive_grad.sign())
        return update


class BlockAdamW(BlockOptimizer, AdamW):
    """adamw.py `BlockAdamW` (the authors' default block_order is "random")."""

    def __init__(self, params: list[dict], *, block_order="random", lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                 weight_decay=0.01, **proj_args):
        params = self._proj_groups(params, **proj_args)
        for group in params:
            if self.is_proj_group(group):
                group["block_order"] = block_order
                group["num_active_blocks"] = round(len(group["params"]) * group["density"])
        AdamW.__init__(self, params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


class GaloreAdamW(GaloreOptimizer, AdamW):
    """adamw.py `GaloreAdamW` with proj_side="std", proj_type="svd"."""

    def __init__(self, params: list[dict], *, svd_dtype=torch.float32, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                 weight_decay=0.01, **proj_args):
        params = self._proj_groups(params, **proj_args)
        for group in params:
            if self.is_proj_group(group):
                group["svd_dtype"] = svd_dtype
        AdamW.__init__(self, params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
