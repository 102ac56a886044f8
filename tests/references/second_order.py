"""Sophia-G's update rule and MKOR's factor logic as their authors released them, for the
reference tests. Nothing here imports algobench or the submissions.

- `SophiaGRelease`: Liuhong99/Sophia, sophia.py, `SophiaG.update_hessian` and `_single_tensor_sophiag`
  (capturable off): the EMA of g_hat^2 is kept, the batch size multiplies it in the step.
- `MKORFactors`: the factor bookkeeping of mkor/mkor.py (`_update_inv_factors`, `_invert_factor`,
  `_reset_factors`, `_set_reset_factor_flags`, `_update_grad`) for one preconditioned layer.
"""

from __future__ import annotations

import torch
from torch.optim import Optimizer


class SophiaGRelease(Optimizer):
    def __init__(self, params, lr=1e-4, betas=(0.965, 0.99), rho=0.04, weight_decay=1e-1):
        super().__init__(params, dict(lr=lr, betas=betas, rho=rho, weight_decay=weight_decay))

    def _init(self, p):
        state = self.state[p]
        if len(state) == 0:
            state["step"] = torch.zeros((1,), dtype=torch.float64)
            state["exp_avg"] = torch.zeros_like(p)
            state["hessian"] = torch.zeros_like(p)
        return state

    @torch.no_grad()
    def update_hessian(self):
        """From p.grad of the sampled-label loss."""
        for group in self.param_groups:
            _, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                self._init(p)["hessian"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)

    @torch.no_grad()
    def step(self, bs=5120):
        for group in self.param_groups:
            beta1, _ = group["betas"]
            lr, rho, weight_decay = group["lr"], group["rho"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self._init(param)
                grad, exp_avg, hess = param.grad, state["exp_avg"], state["hessian"]
                state["step"] += 1
                param.mul_(1 - lr * weight_decay)
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                step_size_neg = -lr
                ratio = (exp_avg.abs() / (rho * bs * hess + 1e-15)).clamp(None, 1)
                param.addcmul_(exp_avg.sign(), ratio, value=step_size_neg)


def sm_inverse(P: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(P^-1 + v v^T)^-1 from P (v a column), utils/factors.py's rank-1 Sherman-Morrison."""
    Pv = P @ v
    return P - (Pv @ (v.T @ P)) / (1 + v.T @ Pv)


class MKORFactors:
    """The inverse factors and reset flags of one layer, updated as mkor/mkor.py does."""

    def __init__(self, threshold: float = 2.0):
        self.AA_inv, self.GG_inv = None, None
        self.a_reset_factor, self.g_reset_factor = True, True
        self.threshold = threshold
        self.exceeded: list[str] = []  # which factor set the flags, in order (for the tests)

    def _set_reset_factor_flags(self, name: str, factor: torch.Tensor) -> None:
        if torch.max(torch.abs(factor.flatten())) > self.threshold:
            self.a_reset_factor, self.g_reset_factor = True, True
            self.exceeded.append(name)

    def _update(self, name: str, a: torch.Tensor) -> None:
        """`_update_inv_factors` for one layer: reset (always to I: `module not in factor_dict` is
        true for a module and a list) or `_invert_factor` with the hard-coded 0.95 damping."""
        v = a.reshape(-1, 1)
        flag = f"{name[0].lower()}_reset_factor"
        if getattr(self, flag):
            setattr(self, name, torch.eye(len(a), dtype=a.dtype))
            setattr(self, flag, False)
        else:
            F = getattr(self, name)
            F = sm_inverse(0.95 * F + 0.05 * torch.eye(len(F), dtype=F.dtype), v)
            setattr(self, name, F)
            self._set_reset_factor_flags(name, F)

    def refresh(self, a: torch.Tensor, g: torch.Tensor) -> None:
        """`_reduce_and_update_factors`: every layer's A first, then every layer's G."""
        self._update("AA_inv", a)
        self._update("GG_inv", g)

    def precondition(self, grad_w: torch.Tensor, grad_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`_get_natural_grad` + `_update_grad`: G^-1 [gW | gb] A^-1 rescaled to the summed norms;
        the plain gradient is kept when the ratio is nan."""
        p_grad_mat = torch.cat([grad_w, grad_b.view(-1, 1)], 1)
        v = self.GG_inv @ p_grad_mat @ self.AA_inv
        vw, vb = v[:, :-1], v[:, -1:].view(grad_b.size())
        grad_norm = grad_w.norm(2) + grad_b.norm(2)
        update_norm = vw.norm(2) + vb.norm(2)
        norm_fixer = grad_norm / update_norm
        if torch.isnan(norm_fixer):
            return grad_w, grad_b
        return vw * norm_fixer, vb * norm_fixer
