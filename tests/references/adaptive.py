"""The authors' released update rules, re-implemented from their code in plain per-tensor loops
(the structure of their `step`), for the reference tests. Nothing here imports algobench or the
submissions. Each class names the file it follows; the lines keep the authors' order of operations.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.optim import Optimizer


class TorchAdamW(Optimizer):
    """pytorch/pytorch torch/optim/adamw.py, `_single_tensor_adamw` (amsgrad off)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"], state["exp_avg"], state["exp_avg_sq"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                state["step"] += 1
                p.mul_(1 - group["lr"] * group["weight_decay"])
                state["exp_avg"].lerp_(p.grad, 1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                bias1, bias2 = 1 - beta1 ** state["step"], 1 - beta2 ** state["step"]
                denom = (state["exp_avg_sq"].sqrt() / math.sqrt(bias2)).add_(group["eps"])
                p.addcdiv_(state["exp_avg"], denom, value=-group["lr"] / bias1)


class TorchSGD(Optimizer):
    """pytorch/pytorch torch/optim/sgd.py, `_single_tensor_sgd` (dampening 0): AlgoPerf's momentum
    and nesterov baselines call torch.optim.SGD with their weight decay."""

    def __init__(self, params, lr=0.1, momentum=0.9, weight_decay=0.0, nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            mu = group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = d_p.clone()
                else:
                    state["momentum_buffer"].mul_(mu).add_(d_p)
                buf = state["momentum_buffer"]
                d_p = d_p.add(buf, alpha=mu) if group["nesterov"] else buf
                p.add_(d_p, alpha=-group["lr"])


class AlgoPerfNAdamW(Optimizer):
    """mlcommons/algorithmic-efficiency, reference_algorithms/paper_baselines/nadamw/pytorch/
    submission.py, `nadamw` (per-tensor step count)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr = group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"], state["exp_avg"], state["exp_avg_sq"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                state["step"] += 1
                grad, exp_avg, exp_avg_sq = p.grad, state["exp_avg"], state["exp_avg_sq"]
                p.mul_(1 - lr * group["weight_decay"])
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step_size = lr / (1 - beta1 ** state["step"])
                bias_correction2_sqrt = math.sqrt(1 - beta2 ** state["step"])
                nesterov = exp_avg.mul(beta1).add_(grad, alpha=1 - beta1)
                denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(group["eps"])
                p.addcdiv_(nesterov, denom, value=-step_size)


class AdaBelief021(Optimizer):
    """juntang-zhuang/Adabelief-Optimizer, pypi_packages/adabelief_pytorch0.2.1/adabelief_pytorch/
    AdaBelief.py (release 0.2.1): weight_decouple=True, fixed_decay=False, amsgrad=False,
    degenerated_to_sgd=True; per-tensor step; the group's 10-slot buffer caches (N_sma, step_size)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-16, weight_decay=0.0, rectify=True):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      buffer=[[None, None, None] for _ in range(10)]))
        self.rectify = rectify

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad, state = p.grad, self.state[p]
                beta1, beta2 = group["betas"]
                if not state:
                    state["step"], state["exp_avg"], state["exp_avg_var"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                p.mul_(1.0 - group["lr"] * group["weight_decay"])
                exp_avg, exp_avg_var = state["exp_avg"], state["exp_avg_var"]
                state["step"] += 1
                bias_correction1 = 1 - beta1 ** state["step"]
                bias_correction2 = 1 - beta2 ** state["step"]
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                grad_residual = grad - exp_avg
                exp_avg_var.mul_(beta2).addcmul_(grad_residual, grad_residual, value=1 - beta2)
                denom = (exp_avg_var.add_(group["eps"]).sqrt() / math.sqrt(bias_correction2)).add_(group["eps"])
                if not self.rectify:
                    p.addcdiv_(exp_avg, denom, value=-group["lr"] / bias_correction1)
                    continue
                buffered = group["buffer"][int(state["step"] % 10)]
                if state["step"] == buffered[0]:
                    n_sma, step_size = buffered[1], buffered[2]
                else:
                    buffered[0] = state["step"]
                    beta2_t = beta2 ** state["step"]
                    n_sma_max = 2 / (1 - beta2) - 1
                    n_sma = n_sma_max - 2 * state["step"] * beta2_t / (1 - beta2_t)
                    buffered[1] = n_sma
                    if n_sma >= 5:
                        step_size = math.sqrt((1 - beta2_t) * (n_sma - 4) / (n_sma_max - 4) * (n_sma - 2) / n_sma
                                              * n_sma_max / (n_sma_max - 2)) / (1 - beta1 ** state["step"])
                    else:  # degenerated_to_sgd
                        step_size = 1.0 / (1 - beta1 ** state["step"])
                    buffered[2] = step_size
                if n_sma >= 5:
                    denom = exp_avg_var.sqrt().add_(group["eps"])
                    p.addcdiv_(exp_avg, denom, value=-step_size * group["lr"])
                elif step_size > 0:
                    p.add_(exp_avg, alpha=-step_size * group["lr"])


def _clova_projection(p, grad, perturb, delta, wd_ratio, eps):
    """clovaai/AdamP `_projection`: channel view, then layer view; the first that passes wins."""
    expand_size = [-1] + [1] * (len(p.shape) - 1)
    for view_func in (lambda x: x.view(x.size(0), -1), lambda x: x.view(1, -1)):
        cosine_sim = F.cosine_similarity(view_func(grad), view_func(p), dim=1, eps=eps).abs_()
        if cosine_sim.max() < delta / math.sqrt(view_func(p).size(1)):
            p_n = p / view_func(p).norm(dim=1).view(expand_size).add_(eps)
            perturb -= p_n * view_func(p_n * perturb).sum(dim=1).view(expand_size)
            return perturb, wd_ratio
    return perturb, 1


class ClovaAdamP(Optimizer):
    """clovaai/AdamP, adamp/adamp.py (release 0.3.0)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, delta=0.1, wd_ratio=0.1,
                 nesterov=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, delta=delta,
                                      wd_ratio=wd_ratio, nesterov=nesterov))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad, (beta1, beta2), state = p.grad, group["betas"], self.state[p]
                if not state:
                    state["step"], state["exp_avg"], state["exp_avg_sq"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                bias_correction1 = 1 - beta1 ** state["step"]
                bias_correction2 = 1 - beta2 ** state["step"]
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(group["eps"])
                step_size = group["lr"] / bias_correction1
                if group["nesterov"]:
                    perturb = (beta1 * exp_avg + (1 - beta1) * grad) / denom
                else:
                    perturb = exp_avg / denom
                wd_ratio = 1
                if len(p.shape) > 1:
                    perturb, wd_ratio = _clova_projection(p, grad, perturb, group["delta"], group["wd_ratio"],
                                                          group["eps"])
                if group["weight_decay"] > 0:
                    p.mul_(1 - group["lr"] * group["weight_decay"] * wd_ratio)
                p.add_(perturb, alpha=-step_size)


class ClovaSGDP(Optimizer):
    """clovaai/AdamP, adamp/sgdp.py (release 0.3.0): d_p is the buffer itself without Nesterov."""

    def __init__(self, params, lr=0.1, momentum=0, dampening=0, weight_decay=0, nesterov=False, eps=1e-8,
                 delta=0.1, wd_ratio=0.1):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, eps=eps, delta=delta, wd_ratio=wd_ratio))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            momentum = group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad, state = p.grad, self.state[p]
                if not state:
                    state["momentum"] = torch.zeros_like(p)
                buf = state["momentum"]
                buf.mul_(momentum).add_(grad, alpha=1 - group["dampening"])
                d_p = grad + momentum * buf if group["nesterov"] else buf
                wd_ratio = 1
                if len(p.shape) > 1:
                    d_p, wd_ratio = _clova_projection(p, grad, d_p, group["delta"], group["wd_ratio"], group["eps"])
                if group["weight_decay"] > 0:
                    p.mul_(1 - group["lr"] * group["weight_decay"] * wd_ratio / (1 - momentum))
                p.add_(d_p, alpha=-group["lr"])


class DiffGradV2(Optimizer):
    """shivram1987/diffGrad, diffGrad_v2.py (the fixed previous-gradient copy); L2 decay is added to
    p.grad in place there, so the stored previous gradient includes it."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad, state = p.grad, self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
                    state["previous_grad"] = torch.zeros_like(p)
                exp_avg, exp_avg_sq, previous_grad = state["exp_avg"], state["exp_avg_sq"], state["previous_grad"]
                beta1, beta2 = group["betas"]
                state["step"] += 1
                if group["weight_decay"] != 0:
                    grad.add_(p, alpha=group["weight_decay"])
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = exp_avg_sq.sqrt().add_(group["eps"])
                bias_correction1 = 1 - beta1 ** state["step"]
                bias_correction2 = 1 - beta2 ** state["step"]
                diff = abs(previous_grad - grad)
                dfc = 1.0 / (1.0 + torch.exp(-diff))
                state["previous_grad"] = grad.clone()
                exp_avg1 = exp_avg * dfc
                step_size = group["lr"] * math.sqrt(bias_correction2) / bias_correction1
                p.addcdiv_(exp_avg1, denom, value=-step_size)


class LucidrainsLion(Optimizer):
    """lucidrains/lion-pytorch, lion_pytorch/lion_pytorch.py (release 0.2.5), `update_fn`
    (decoupled_wd=False: p *= 1 - lr * wd)."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                exp_avg = state["exp_avg"]
                p.mul_(1.0 - lr * wd)
                update = exp_avg.clone().mul_(beta1).add(p.grad, alpha=1.0 - beta1).sgn_()
                p.add_(update, alpha=-lr)
                exp_avg.mul_(beta2).add_(p.grad, alpha=1.0 - beta2)


class SailAdan(Optimizer):
    """sail-sg/Adan, adan.py, `_single_tensor_adan` (max_grad_norm=0): the group's step count, the
    first difference zero (`neg_pre_grad` starts at -g)."""

    def __init__(self, params, lr=1e-3, betas=(0.98, 0.92, 0.99), eps=1e-8, weight_decay=0.0, no_prox=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, no_prox=no_prox))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            beta1, beta2, beta3 = group["betas"]
            group["step"] = group.get("step", 0) + 1
            bias_correction1 = 1.0 - beta1 ** group["step"]
            bias_correction2 = 1.0 - beta2 ** group["step"]
            bias_correction3_sqrt = math.sqrt(1.0 - beta3 ** group["step"])
            lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad, state = p.grad, self.state[p]
                if not state:
                    state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
                    state["exp_avg_diff"] = torch.zeros_like(p)
                if "neg_pre_grad" not in state or group["step"] == 1:
                    state["neg_pre_grad"] = grad.clone().mul_(-1.0)
                exp_avg, exp_avg_sq, exp_avg_diff = state["exp_avg"], state["exp_avg_sq"], state["exp_avg_diff"]
                neg_grad_or_diff = state["neg_pre_grad"]
                neg_grad_or_diff.add_(grad)
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_diff.mul_(beta2).add_(neg_grad_or_diff, alpha=1 - beta2)
                neg_grad_or_diff.mul_(beta2).add_(grad)
                exp_avg_sq.mul_(beta3).addcmul_(neg_grad_or_diff, neg_grad_or_diff, value=1 - beta3)
                denom = (exp_avg_sq.sqrt() / bias_correction3_sqrt).add_(eps)
                step_size_diff = lr * beta2 / bias_correction2
                step_size = lr / bias_correction1
                if group["no_prox"]:
                    p.mul_(1 - lr * wd)
                    p.addcdiv_(exp_avg, denom, value=-step_size)
                    p.addcdiv_(exp_avg_diff, denom, value=-step_size_diff)
                else:
                    p.addcdiv_(exp_avg, denom, value=-step_size)
                    p.addcdiv_(exp_avg_diff, denom, value=-step_size_diff)
                    p.div_(1 + lr * wd)
                neg_grad_or_diff.zero_().add_(grad, alpha=-1.0)


class AddonsLAMB(Optimizer):
    """tensorflow/addons, tensorflow_addons/optimizers/lamb.py, `_resource_apply_dense`, in torch:
    the step count is the optimizer's `iterations` (one per apply, shared by every variable);
    `decay` marks the tensors that are decayed and layer-adapted (exclude_from_layer_adaptation
    defaults to exclude_from_weight_decay there)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, decay=True):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, decay=decay))
        self.iterations = 0

    @torch.no_grad()
    def step(self):
        local_step = self.iterations + 1
        for group in self.param_groups:
            beta_1_t, beta_2_t = group["betas"]
            for var in group["params"]:
                if var.grad is None:
                    continue
                grad, state = var.grad, self.state[var]
                if not state:
                    state["m"], state["v"] = torch.zeros_like(var), torch.zeros_like(var)
                m_t = state["m"].mul_(beta_1_t).add_(grad * (1 - beta_1_t))
                v_t = state["v"].mul_(beta_2_t).add_(grad * grad * (1 - beta_2_t))
                m_t_hat = m_t / (1.0 - beta_1_t**local_step)
                v_t_hat = v_t / (1.0 - beta_2_t**local_step)
                update = m_t_hat / (v_t_hat.sqrt() + group["eps"])
                if group["decay"]:
                    update = update + group["weight_decay"] * var
                ratio = 1.0
                if group["decay"]:
                    w_norm, g_norm = var.norm(p=2), update.norm(p=2)
                    ratio = torch.where(w_norm > 0, torch.where(g_norm > 0, w_norm / g_norm, 1.0), 1.0)
                var.sub_(ratio * group["lr"] * update)
        self.iterations += 1


class SGDSaI103(Optimizer):
    """AnonymousAlethiometer/SGD_SaI, sgd_sai/sgd_sai.py (release 1.0.3): `warmup_step` measures
    every tensor's gsnr at the first step(), then momentum (buffer = g at first) and decoupled decay."""

    def __init__(self, params, lr=1e-2, momentum=0.9, eps=1e-8, weight_decay=1e-2):
        super().__init__(params, dict(lr=lr, momentum=momentum, eps=eps, weight_decay=weight_decay))
        self.has_warmup = False

    @torch.no_grad()
    def warmup_step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                sigma = p.grad.std().nan_to_num()
                self.state[p]["gsnr"] = p.grad.norm() / (sigma + group["eps"])
        self.has_warmup = True

    @torch.no_grad()
    def step(self):
        if not self.has_warmup:
            self.warmup_step()
        for group in self.param_groups:
            momentum, lr = group["momentum"], group["lr"]
            decay_factor = 1 - group["weight_decay"] * lr
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p, param_state = p.grad, self.state[p]
                if "momentum_buffer" not in param_state:
                    buf = param_state["momentum_buffer"] = torch.clone(d_p).detach()
                else:
                    buf = param_state["momentum_buffer"]
                    buf.mul_(momentum).add_(d_p, alpha=1 - momentum)
                p.mul_(decay_factor).add_(buf, alpha=-lr * param_state["gsnr"])


class ScheduleFree141(Optimizer):
    """facebookresearch/schedule_free, schedulefree/adamw_schedulefree.py (release 1.4.1),
    `AdamWScheduleFree.step` (foreach=False branch), `eval` and `train`."""

    def __init__(self, params, lr=0.0025, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, warmup_steps=0, r=0.0,
                 weight_lr_power=2.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, r=r, k=0, warmup_steps=warmup_steps,
                                      train_mode=True, weight_sum=0.0, lr_max=-1.0, weight_lr_power=weight_lr_power,
                                      weight_decay=weight_decay))

    @torch.no_grad()
    def eval(self):
        for group in self.param_groups:
            if group["train_mode"]:
                for p in group["params"]:
                    if "z" in self.state[p]:
                        p.lerp_(end=self.state[p]["z"], weight=1 - 1 / group["betas"][0])
                group["train_mode"] = False

    @torch.no_grad()
    def train(self):
        for group in self.param_groups:
            if not group["train_mode"]:
                for p in group["params"]:
                    if "z" in self.state[p]:
                        p.lerp_(end=self.state[p]["z"], weight=1 - group["betas"][0])
                group["train_mode"] = True

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            eps, (beta1, beta2), decay, k = group["eps"], group["betas"], group["weight_decay"], group["k"]
            sched = (k + 1) / group["warmup_steps"] if k < group["warmup_steps"] else 1.0
            bias_correction2 = 1 - beta2 ** (k + 1)
            lr = group["lr"] * sched
            lr_max = group["lr_max"] = max(lr, group["lr_max"])
            weight = ((k + 1) ** group["r"]) * (lr_max ** group["weight_lr_power"])
            weight_sum = group["weight_sum"] = group["weight_sum"] + weight
            try:
                ckp1 = weight / weight_sum
            except ZeroDivisionError:
                ckp1 = 0
            for p in [p for p in group["params"] if p.grad is not None]:
                state = self.state[p]
                if "z" not in state:
                    state["z"] = torch.clone(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                y, grad, z, exp_avg_sq = p, p.grad, state["z"], state["exp_avg_sq"]
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = exp_avg_sq.div(bias_correction2).sqrt_().add_(eps)
                grad_normalized = grad.div_(denom)
                if decay != 0:
                    grad_normalized.add_(y, alpha=decay)
                y.lerp_(end=z, weight=ckp1)
                y.add_(grad_normalized, alpha=lr * (beta1 * (1 - ckp1) - 1))
                z.sub_(grad_normalized, alpha=lr)
            group["k"] = k + 1
