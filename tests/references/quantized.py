"""The communication- and memory-saving Adams, for the reference tests.

`BnbAdamW8bitCPU`: 8-bit AdamW as bitsandbytes 0.50.2 releases it in pure PyTorch (the CPU backend): `Optimizer2State`
(bitsandbytes/optim/optimizer.py: blocks of 256, fp32 states below `min_8bit_size`), the dynamic
maps of `functional.create_dynamic_map`, the blockwise quantization of backends/default/ops.py
(nearest code by bucketize on the midpoints, absmax per block, the last block partial) and the
update of backends/cpu/ops.py (`_optimizer_update_8bit_blockwise_cpu`, `_optimizer_update_32bit_cpu`,
optimizer "adam"). `DeepSpeedOnebitAdam`: DeepSpeed's 1-bit Adam on one process. Nothing here
imports algobench or the submissions.
"""

from __future__ import annotations

import math

import torch
from torch.optim import Optimizer

BLOCKSIZE = 256


def create_dynamic_map(signed: bool = True, max_exponent_bits: int = 7, total_bits: int = 8) -> torch.Tensor:
    data = []
    non_sign_bits = total_bits - 1
    for i in range(max_exponent_bits):
        fraction_items = int(2 ** (i + non_sign_bits - max_exponent_bits) + 1 if signed
                             else 2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1)
        boundaries = torch.linspace(0.1, 1, fraction_items, dtype=torch.float32)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    data.append(0)
    data.append(1.0)
    assert len(data) == 2**total_bits
    data.sort()
    return torch.tensor(data)


def quantize_blockwise(A: torch.Tensor, code: torch.Tensor, blocksize: int) -> tuple[torch.Tensor, torch.Tensor]:
    A_flat = A.reshape(-1).float()
    n = A_flat.numel()
    rem = n % blocksize
    full = n - rem
    A_com = A_flat[:full].reshape(full // blocksize, blocksize)
    absmax = A_com.abs().max(dim=-1)[0]
    scaled = torch.clamp(A_com * (1.0 / absmax.clamp(min=1e-38).view(-1, 1)), -1, 1).reshape(-1)
    if rem:
        am = A_flat[full:].abs().max().clamp(min=1e-38)
        absmax = torch.cat([absmax, am.unsqueeze(0)])
        scaled = torch.cat([scaled, torch.clamp(A_flat[full:] / am, -1, 1)])
    bounds = (code[:-1] + code[1:]) / 2
    return torch.bucketize(scaled, bounds, out_int32=True).to(torch.uint8).reshape(A.shape), absmax


def dequantize_blockwise(A: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, blocksize: int) -> torch.Tensor:
    flat = A.reshape(-1)
    n = flat.numel()
    out = code[flat.to(torch.int64)]
    rem = n % blocksize
    full = n - rem
    parts = [(out[:full].reshape(full // blocksize, blocksize) * absmax[:full // blocksize].view(-1, 1)).reshape(full)]
    if rem:
        parts.append(out[full:] * absmax[full // blocksize])
    return torch.cat(parts).to(torch.float32).reshape(A.shape)


class BnbAdamW8bitCPU(Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, min_8bit_size=4096):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.min_8bit_size = min_8bit_size
        self.qmap1, self.qmap2 = create_dynamic_map(signed=True), create_dynamic_map(signed=False)

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    if p.numel() < self.min_8bit_size:
                        state["state1"] = torch.zeros_like(p, dtype=torch.float32)
                        state["state2"] = torch.zeros_like(p, dtype=torch.float32)
                    else:
                        blocks = (p.numel() // BLOCKSIZE) + bool(p.numel() % BLOCKSIZE)
                        state["state1"] = torch.zeros_like(p, dtype=torch.uint8)
                        state["state2"] = torch.zeros_like(p, dtype=torch.uint8)
                        state["absmax1"] = torch.zeros((blocks,), dtype=torch.float32)
                        state["absmax2"] = torch.zeros((blocks,), dtype=torch.float32)
                state["step"] += 1
                step = state["step"]
                grad, p_fp32 = p.grad.float(), p.data.float()
                correction1 = 1.0 - beta1**step
                correction2 = math.sqrt(1.0 - beta2**step)
                if state["state1"].dtype == torch.float32:  # _optimizer_update_32bit_cpu
                    state1, state2 = state["state1"], state["state2"]
                    state1.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                    state2.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                    if weight_decay > 0.0:
                        p_fp32.mul_(1.0 - lr * weight_decay)
                    p_fp32.add_(state1 / (state2.sqrt() + eps * correction2), alpha=-lr * correction2 / correction1)
                else:  # _optimizer_update_8bit_blockwise_cpu
                    state1 = dequantize_blockwise(state["state1"], state["absmax1"], self.qmap1, BLOCKSIZE)
                    state2 = dequantize_blockwise(state["state2"], state["absmax2"], self.qmap2, BLOCKSIZE)
                    state1.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                    state2.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                    denom = (state2.sqrt() / correction2).add_(eps)
                    if weight_decay > 0.0:
                        p_fp32.mul_(1.0 - lr * weight_decay)
                    p_fp32.addcdiv_(state1, denom, value=-lr / correction1)
                    state["state1"], state["absmax1"] = quantize_blockwise(state1, self.qmap1, BLOCKSIZE)
                    state["state2"], state["absmax2"] = quantize_blockwise(state2, self.qmap2, BLOCKSIZE)
                p.data.copy_(p_fp32)


class DeepSpeedOnebitAdam(Optimizer):
    """microsoft/DeepSpeed deepspeed/runtime/fp16/onebit/adam.py `OnebitAdam.step` on one process
    (comm size 1: `compressed_allreduce` is skipped there), bias_correction off as its default use:
    the first call only initializes (counts a step, moves nothing); then Adam without bias
    correction, update = m / (sqrt(v) + eps) + wd * p; after the call at which step >= freeze_step,
    v is frozen and only m is updated."""

    def __init__(self, params, lr=1e-3, freeze_step=100000, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.freeze_step = freeze_step
        self.adam_freeze_key, self.initialize = False, False

    @torch.no_grad()
    def step(self):
        state = None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad, state = p.grad, self.state[p]
                if len(state) == 0:
                    state["step"], state["exp_avg"], state["exp_avg_sq"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                if not self.initialize:
                    self.adam_freeze_key = True  # set while the error buffers are allocated
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                beta1, beta2 = group["betas"]
                state["step"] += 1
                if self.adam_freeze_key is False:
                    exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                else:
                    if self.initialize is True:
                        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                if self.initialize:
                    update = exp_avg / (exp_avg_sq.sqrt() + group["eps"])
                    if group["weight_decay"] > 0.0:
                        update += group["weight_decay"] * p
                    p.add_(-group["lr"] * update)
        if not self.initialize:
            self.adam_freeze_key, self.initialize = False, True
            return
        if self.adam_freeze_key is False and state["step"] >= self.freeze_step:
            self.adam_freeze_key = True
