"""ViT's parameters and training FLOPs per image (algobench/flops.py states the accounting).

n = (image / patch)^2 tokens (+1 with a class token). Per token and block: attention's
projections 4 d^2, the MLP 2 d m (+ m^2 with the GLU), attention 4 n d forward FLOPs; the patch
embedding is a P^2 C -> d matmul per token; heads act on one pooled vector.
"""

from __future__ import annotations

from algobench.flops import ModelCost, n_params
from algobench.specs import Preset
from workloads.vit.model import ViT, ViTConfig


def forward_flops(cfg: ViTConfig) -> float:
    enc = cfg.encoder
    d, m = enc.width, enc.mlp_dim
    n = (cfg.image_size // cfg.patch_size) ** 2
    patch = 2 * n * cfg.patch_size ** 2 * cfg.channels * d
    n += cfg.pool == "cls"
    block = 2 * n * (4 * d * d + 2 * d * m + (m * m if enc.glu else 0)) + 4 * n * n * d
    head = 2 * d * cfg.n_classes + (2 * d * d if cfg.rep_size else 0)
    if cfg.pool == "map":  # one probe query over n keys, then a residual MLP on it
        head += 2 * n * 2 * d * d + 2 * 2 * d * d + 4 * n * d + 2 * 2 * d * m
    return patch + enc.depth * block + head


def cost(preset: Preset) -> ModelCost:
    cfg = preset.config.model
    return ModelCost(n_params=n_params(lambda: ViT(cfg)), train_flops_per_example=3 * forward_flops(cfg),
                     example=f"one {cfg.image_size}x{cfg.image_size} image")
