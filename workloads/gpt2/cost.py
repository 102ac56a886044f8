"""GPT-2's parameters and training FLOPs per sequence (algobench/flops.py states the accounting).

Per token and layer the matmuls hold 12 d^2 weights (QKV 3d^2, projection d^2, MLP 8d^2), the
tied output layer V d more; attention adds 4 T d forward FLOPs per token and layer (QK^T, AV).
"""

from __future__ import annotations

from algobench.flops import ModelCost, n_params
from algobench.specs import Preset
from workloads.gpt2.model import GPT, GPTConfig


def forward_flops(cfg: GPTConfig, seq_len: int) -> float:
    """Forward FLOPs of one sequence of `seq_len` tokens."""
    d, L = cfg.n_embd, cfg.n_layer
    matmul_weights = 12 * L * d * d + cfg.vocab_size * d
    return 2 * seq_len * matmul_weights + 4 * L * seq_len * seq_len * d


def cost(preset: Preset) -> ModelCost:
    cfg = preset.config.model
    return ModelCost(n_params=n_params(lambda: GPT(cfg)), train_flops_per_example=3 * forward_flops(cfg, cfg.block_size),
                     example=f"one sequence of {cfg.block_size:,} tokens")
