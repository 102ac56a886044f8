"""GPT-2 language modelling on token shards: next-token cross-entropy, target on val loss."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict

from algobench.specs import Preset, Target
from algobench.frameworks.torch import Batch, TorchWorkload
from algobench.workload import DataSpec, WorkloadSpec
from workloads.gpt2 import cost as analytic_cost
from workloads.gpt2 import prepare as prep
from workloads.gpt2.model import GPT, GPTConfig
from workloads.gpt2.shards import TokenStream, eval_windows, find_shards, read_shard
from workloads import WORKLOADS


class Gpt2Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    model: GPTConfig
    eval_tokens: int  # per split
    eval_batch_size: int  # sequences per eval forward pass


# --- presets: one code path, three sizes -----------------------------------------------------

def smoke() -> Preset:
    return Preset(
        target=Target(metric="val_loss", value=3.8, mode="min"),
        budget_s=120, eval_period_s=3, eval_period_steps=50, step_hint=800, batch_size=16,
        log_every_steps=10,
        how_target_was_set="AdamW baseline (submissions/adamw.py defaults, seed 1) on 2 CPU cores: "
                           "val_loss 3.8 after ~400 steps, ~24 s of submission time; budget ~5x that",
        config=Gpt2Config(model=GPTConfig(vocab_size=prep.SMOKE_VOCAB, block_size=128, n_layer=3, n_head=3,
                                          n_embd=96), eval_tokens=16_384, eval_batch_size=64),
    )


def small() -> Preset:
    return Preset(
        target=Target(metric="val_loss", value=3.9, mode="min"),
        budget_s=3600, eval_period_s=120, step_hint=8000, batch_size=64, log_every_steps=50,
        how_target_was_set="provisional: 6-layer d=384 GPT-2 on FineWeb at 64x1024 tokens per step; "
                           "not yet calibrated on a GPU (see README)",
        config=Gpt2Config(model=GPTConfig(n_layer=6, n_head=6, n_embd=384), eval_tokens=4_194_304,
                          eval_batch_size=32),
    )


def full() -> Preset:
    return Preset(
        target=Target(metric="val_loss", value=3.28, mode="min"),
        budget_s=10_800, eval_period_s=300, step_hint=19_073, batch_size=512, log_every_steps=50,
        how_target_was_set="the GPT-2 (124M) speedrun target of llm.c / modded-nanogpt: val loss 3.28 on the "
                           "first 10,485,760 FineWeb val tokens; budget ~3x llm.c's AdamW baseline on 8 GPUs",
        config=Gpt2Config(model=GPTConfig(), eval_tokens=10_485_760, eval_batch_size=32),
    )


# --- the workload ------------------------------------------------------------------------------

@dataclass
class Gpt2Workload(TorchWorkload):
    _eval_cache: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def cfg(self) -> Gpt2Config:
        return self.preset.config

    @property
    def folder(self) -> Path:
        return prep.data_dir_for(self.data_dir, self.size)

    def build_model(self) -> GPT:
        return GPT(self.cfg.model)

    def train_batches(self, *, seed: int, batch_size: int, rank: int = 0, world_size: int = 1,
                      start_step: int = 0) -> Iterator[Batch]:
        stream = TokenStream(find_shards(self.folder, "train"), self.cfg.model.block_size)
        return stream.batches(seed=seed, batch_size=batch_size, device=self.backend.device, rank=rank,
                              world_size=world_size, start_step=start_step)

    def eval_batches(self, split: str) -> Iterator[Batch]:
        if split not in self._eval_cache:
            self._eval_cache[split] = self._eval_rows(split).to(self.backend.device)
        rows = self._eval_cache[split]
        for i in range(0, len(rows), self.cfg.eval_batch_size):
            chunk = rows[i:i + self.cfg.eval_batch_size]
            yield {"inputs": chunk[:, :-1], "targets": chunk[:, 1:]}

    def _eval_rows(self, split: str) -> torch.Tensor:
        """val: the first eval_tokens val tokens; test: the test shard's, or the next eval_tokens
        of val when there is no test shard (FineWeb has none)."""
        seq, n = self.cfg.model.block_size, self.cfg.eval_tokens
        test_shards = find_shards(self.folder, "test")
        if split == "test" and test_shards:
            return eval_windows(read_shard(test_shards[0]), seq_len=seq, n_tokens=n)
        val = read_shard(find_shards(self.folder, "val")[0])
        return eval_windows(val, seq_len=seq, n_tokens=n, offset=n if split == "test" else 0)

    def model_fn(self, params: torch.nn.Module, batch: Batch) -> torch.Tensor:
        return params(batch["inputs"])

    def loss_fn(self, label_batch, logits_batch, mask_batch=None, label_smoothing: float = 0.0):
        per_token = F.cross_entropy(logits_batch.flatten(0, 1).float(), label_batch.flatten(),
                                    reduction="none", label_smoothing=label_smoothing)
        if mask_batch is not None:
            per_token = per_token * mask_batch.flatten()
            n = mask_batch.sum()
        else:
            n = torch.tensor(per_token.numel(), device=per_token.device)
        return {"summed": per_token.sum(), "n_valid_examples": n, "per_example": per_token}


def build(*, preset: Preset, size: str, data_dir: Path, backend) -> Gpt2Workload:
    return Gpt2Workload(name="gpt2", size=size, preset=preset, backend=backend, data_dir=Path(data_dir))


def build_jax(**kwargs):
    from workloads.gpt2.jax_model import build as build_jax  # jax is an optional extra

    return build_jax(build_torch=build, **kwargs)


WORKLOADS.register("gpt2", WorkloadSpec(
    name="gpt2",
    description="GPT-2 language model on FineWeb token shards (smoke: the King James Bible, 1k BPE)",
    presets={"smoke": smoke(), "small": small(), "full": full()},
    data=DataSpec(is_ready=prep.is_ready, prepare=prep.prepare),
    build_torch=build,
    cost=analytic_cost.cost,
    build_jax=build_jax,
    algoperf_name="finewebedu_lm",
))
