"""Stand-in for `algoperf.pytorch_utils`: the helpers PyTorch submissions import."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def pytorch_setup() -> tuple[bool, int, torch.device, int]:
    """(use_ddp, rank, device, n_gpus) from the environment, as AlgoPerf computes them."""
    use_ddp = "LOCAL_RANK" in os.environ
    rank = int(os.environ["LOCAL_RANK"]) if use_ddp else 0
    device = torch.device(f"cuda:{rank}" if torch.cuda.is_available() else "cpu")
    return use_ddp, rank, device, torch.cuda.device_count()


def sync_ddp_time(time: float, device: torch.device) -> float:
    t = torch.tensor(time, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.item()


def update_batch_norm_fn(module: torch.nn.Module, update_batch_norm: bool) -> None:
    """Freeze (momentum 0) or restore a batch-norm layer's running statistics."""
    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
        if not update_batch_norm:
            if not hasattr(module, "momentum_backup"):
                module.momentum_backup = module.momentum
            module.momentum = 0.0
        elif hasattr(module, "momentum_backup"):
            module.momentum = module.momentum_backup
