"""Stable-SPAM as its authors released it (TianjinYellow/StableSPAM, `stablespam.py`, class
`StableSPAM`; total_T=None so the cosine scaling of beta1/gamma1 is off, amsgrad off), in the
structure of their `step`: a per-tensor step count shared by AdaClip, AdaGN and Adam, reset with
the moments every `update_proj_gap` optimizer steps. Nothing here imports algobench."""

from __future__ import annotations

import math

import torch
from torch.optim import Optimizer


class StableSPAMRelease(Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, gamma1=0.7, gamma2=0.9,
                 gamma3=0.999, update_proj_gap=1000):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.gamma1, self.gamma2, self.theta = gamma1, gamma2, gamma3
        self.total_steps = 0
        self.update_proj_gap = update_proj_gap

    @torch.no_grad()
    def step(self):
        self.total_steps += 1
        scale = 1.0
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                p.mul_(1 - group["lr"] * group["weight_decay"])
                grad, state = p.grad, self.state[p]
                if "exp_avg" not in state:
                    state["step"] = 0
                    state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(grad), torch.zeros_like(grad)
                    state["m_norm_t"], state["v_norm_t"], state["m_max_t"] = 0, 0, 0
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                max_gradient = torch.max(grad.abs())
                m_max_t = state["m_max_t"]
                state["step"] += 1
                m_max_t = self.theta * m_max_t + (1 - self.theta) * max_gradient
                m_max_hat = m_max_t / (1 - self.theta ** state["step"])
                mask = grad.abs() > m_max_hat
                if mask.sum() > 0:
                    grad[mask] = grad[mask] / max_gradient * m_max_hat
                state["m_max_t"] = m_max_t
                grad_norm = torch.norm(grad)
                m_norm_t, v_norm_t = state["m_norm_t"], state["v_norm_t"]
                m_norm_t = self.gamma1 * scale * m_norm_t + (1 - self.gamma1 * scale) * grad_norm
                v_norm_t = self.gamma2 * v_norm_t + (1 - self.gamma2) * grad_norm**2
                m_norm_hat = m_norm_t / (1 - (self.gamma1 * scale) ** state["step"])
                v_norm_hat = v_norm_t / (1 - self.gamma2 ** state["step"])
                c_norm_t = m_norm_hat / (torch.sqrt(v_norm_hat) + group["eps"])
                if grad_norm > 0:
                    grad = grad / grad_norm * c_norm_t
                state["m_norm_t"], state["v_norm_t"] = m_norm_t, v_norm_t
                if self.update_proj_gap != 0 and self.total_steps % self.update_proj_gap == 0:
                    # the fresh moments go into the state; this step still uses exp_avg, exp_avg_sq
                    state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(grad), torch.zeros_like(grad)
                    state["step"] = 1
                beta1, beta2 = group["betas"]
                beta1 = beta1 * scale
                bias_correction1 = 1 - beta1 ** state["step"]
                bias_correction2 = 1 - beta2 ** state["step"]
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(group["eps"])
                p.add_(exp_avg / denom, alpha=-group["lr"] / bias_correction1)
