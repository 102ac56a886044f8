"""Data parallelism over processes (DDP): one global batch sliced by rank; only rank 0 writes.

The processes come from `torchrun` or from SLURM tasks (submitit's TorchDistributedEnvironment
exports the same RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT variables). Every
rank runs the same loop on its slice of the global batch; DDP averages the gradients, so a step
equals a one-process step on the whole batch. Ranks must take the same decisions: time-based
ones (budget, eval due, suspension) are agreed at the loss printouts, one small collective
every `log_every_steps` steps; step-based ones need no agreement.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = Dist()


def from_env(env: Mapping[str, str] = os.environ) -> Dist:
    """The process's place from torchrun's variables (or submitit's export of them)."""
    world_size = int(env.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return SINGLE
    return Dist(rank=int(env["RANK"]), world_size=world_size, local_rank=int(env.get("LOCAL_RANK", "0")))


def from_slurm_tasks() -> Dist:
    """Inside a SLURM job of several tasks: export torchrun's variables from SLURM's, then read them."""
    import submitit

    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    return from_env()


def init(dist: Dist, device: str) -> None:
    """Join the process group (nccl on GPU, gloo on CPU) unless this process is alone or joined."""
    if not dist.active or torch.distributed.is_initialized():
        return
    on_gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if on_gpu:
        torch.cuda.set_device(dist.local_rank)
    torch.distributed.init_process_group("nccl" if on_gpu else "gloo", rank=dist.rank,
                                         world_size=dist.world_size)


def wrap(model: nn.Module, dist: Dist, device: torch.device) -> nn.Module:
    if not dist.active:
        return model
    ids = [torch.cuda.current_device()] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def agree(dist: Dist, *, loss: torch.Tensor | None, elapsed_s: float, suspend: bool,
          device: torch.device) -> tuple[float | None, float, bool]:
    """One collective: the mean training loss over ranks, the largest submission time, and
    whether any rank was asked to suspend. Every rank gets the same three values."""
    mine = torch.tensor([float("nan") if loss is None else float(loss), elapsed_s, float(suspend)],
                        dtype=torch.float64, device=device)
    everyone = [torch.empty_like(mine) for _ in range(dist.world_size)]
    torch.distributed.all_gather(everyone, mine)
    table = torch.stack(everyone).cpu()
    mean_loss = None if loss is None else float(table[:, 0].mean())
    return mean_loss, float(table[:, 1].max()), bool(table[:, 2].max() > 0)


def all_true(dist: Dist, flag: bool) -> bool:
    if not dist.active:
        return flag
    flags = [None] * dist.world_size
    torch.distributed.all_gather_object(flags, bool(flag))
    return all(flags)


def from_main(dist: Dist, value: Any) -> Any:
    """Rank 0's `value`, on every rank (e.g. the trial folder rank 0 chose)."""
    if not dist.active:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def barrier(dist: Dist) -> None:
    if dist.active:
        torch.distributed.barrier()
