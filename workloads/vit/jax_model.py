"""ViT in plain JAX: the model of workloads/vit/model.py (patches by a strided projection, fixed 2-D
sin-cos positions, the shared encoder, GAP / class-token / attention-pooling head, tanh
pre-logits, zero-initialised head), as pure functions of a parameter dict named like the torch
model's. Every registered variant (GLU, post-LN, MAP) is the same code with its config flag.

Reading order: init -> patches -> heads -> forward -> the workload. Data, presets, targets and
parameter kinds are the torch workload's (algobench/jax_backend.py says why).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from algobench.frameworks.jax import Batch, JaxBackend, JaxWorkload, Params, torch_data
from algobench.specs import Preset
from workloads.jax_layers import (Keys, attend, dense, encoder, init_encoder_xavier, layer_norm,
                                  layer_norm_params, mlp, torch_linear, uniform, xavier_uniform)
from workloads.vit.model import ViTConfig, posemb_sincos_2d


def init_params(cfg: ViTConfig, key: jax.Array) -> Params:
    """As ViT.__init__: torch's default init for the patch projection and pre-logits, Xavier for the
    encoder and the attention-pooling head, a zero head."""
    keys, enc = Keys(key), cfg.encoder
    width, fan_in = enc.width, cfg.channels * cfg.patch_size**2
    bound = 1.0 / np.sqrt(fan_in)
    params = {"patch.weight": uniform(keys(), (width, cfg.channels, cfg.patch_size, cfg.patch_size), bound),
              "patch.bias": uniform(keys(), (width,), bound)}
    if cfg.pool == "cls":
        params["cls"] = jnp.zeros((1, 1, width), jnp.float32)
    params |= init_encoder_xavier(keys, "encoder", enc)
    if cfg.pool == "map":
        params |= {"map.probe": xavier_uniform(keys(), (1, width)).reshape(1, 1, width),
                   "map.q.weight": xavier_uniform(keys(), (width, width)), "map.q.bias": jnp.zeros((width,)),
                   "map.kv.weight": jnp.concatenate([xavier_uniform(keys(), (width, width)) for _ in range(2)]),
                   "map.kv.bias": jnp.zeros((2 * width,)),
                   "map.proj.weight": xavier_uniform(keys(), (width, width)), "map.proj.bias": jnp.zeros((width,))}
        params |= layer_norm_params("map.norm", width)
        params |= torch_linear(keys, "map.mlp.fc1", width, enc.mlp_dim) | torch_linear(keys, "map.mlp.fc2",
                                                                                          enc.mlp_dim, width)
    if cfg.rep_size:
        params |= torch_linear(keys, "pre_logits", width, width)
    head = torch_linear(keys, "head", width, cfg.n_classes)
    if cfg.head_zeroinit:
        head = {k: jnp.zeros_like(v) for k, v in head.items()}
    return params | head


def patches(params: Params, images: jax.Array, cfg: ViTConfig, dtype) -> jax.Array:
    """(B, C, H, W) -> (B, patches, width): the strided convolution as one matmul over
    row-major patches, each flattened (C, p, p) as the conv weight is."""
    B, C, H, W = images.shape
    p = cfg.patch_size
    x = images.reshape(B, C, H // p, p, W // p, p).transpose(0, 2, 4, 1, 3, 5).reshape(B, -1, C * p * p)
    w = params["patch.weight"].reshape(params["patch.weight"].shape[0], -1)
    return dense({"w.weight": w, "w.bias": params["patch.bias"]}, "w", x, dtype)


def map_head(params: Params, x: jax.Array, cfg: ViTConfig, dtype) -> jax.Array:
    """Multihead attention pooling: a learned probe attends over the tokens, then a residual MLP."""
    k, v = jnp.split(dense(params, "map.kv", x, dtype), 2, axis=-1)
    probe = jnp.broadcast_to(params["map.probe"], (x.shape[0], 1, x.shape[-1]))
    q = dense(params, "map.q", probe, dtype)
    y = dense(params, "map.proj", attend(q, k, v, n_heads=cfg.encoder.n_heads), dtype)
    y = y + mlp(params, "map.mlp", layer_norm(params, "map.norm", y, cfg.encoder.norm_eps),
                activation=cfg.encoder.activation, dtype=dtype)
    return y[:, 0]


def forward(params: Params, images: jax.Array, cfg: ViTConfig, dtype=None) -> jax.Array:
    """Logits (B, n_classes) for normalised images (B, channels, H, W)."""
    grid = cfg.image_size // cfg.patch_size
    posemb = jnp.asarray(posemb_sincos_2d(grid, grid, cfg.encoder.width).numpy())[None]
    x = patches(params, images, cfg, dtype) + posemb
    if cfg.pool == "cls":
        x = jnp.concatenate([jnp.broadcast_to(params["cls"], (x.shape[0], 1, x.shape[-1])).astype(x.dtype), x], 1)
    x = encoder(params, "encoder", x, cfg.encoder, dtype)
    if cfg.pool == "map":
        x = map_head(params, x, cfg, dtype)
    elif cfg.pool == "cls":
        x = x[:, 0]
    else:
        x = x.mean(axis=1)
    if cfg.rep_size:
        x = jnp.tanh(dense(params, "pre_logits", x, dtype))
    return dense(params, "head", x, dtype)


# --- the workload ------------------------------------------------------------------------------

@dataclass
class VitJax(JaxWorkload):
    @property
    def settings(self):
        return self.preset.config

    def init_params(self, key: jax.Array) -> Params:
        return init_params(self.settings.model, key)

    def model_fn(self, params: Params, batch: Batch) -> jax.Array:
        """Normalise the uint8 images on the device, then the logits."""
        mean, std = (jnp.asarray(v, jnp.float32).reshape(1, -1, 1, 1) for v in (self.settings.mean, self.settings.std))
        images = (batch["inputs"].astype(jnp.float32) / 255.0 - mean) / std
        return forward(params, images, self.settings.model, self.backend.compute_dtype)

    def eval_sums(self, params: Params, batch: Batch) -> dict[str, jax.Array]:
        logits = self.model_fn(params, batch)
        out = self.loss_fn(batch["targets"], logits)
        correct = (logits.argmax(-1) == batch["targets"]).sum()
        return {"loss": out["summed"], "accuracy": correct.astype(jnp.float32), "count": out["n_valid_examples"]}


def builder(name: str, build_torch):
    def build(*, preset: Preset, size: str, data_dir: Path, backend: JaxBackend) -> VitJax:
        return VitJax(name=name, size=size, preset=preset, backend=backend,
                      data=torch_data(build_torch, preset=preset, size=size, data_dir=data_dir))
    return build
