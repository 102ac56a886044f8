"""GPT-2 in plain JAX: the model of workloads/gpt2/model.py (learned positions, pre-LN blocks, GELU
MLP, tied embeddings), as pure functions of a parameter dict named like the torch model's.

Reading order: init -> attention -> MLP -> block -> forward -> the workload. Data, presets,
targets and parameter kinds are the torch workload's (algobench/jax_backend.py says why).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp

from algobench.frameworks.jax import Batch, JaxBackend, JaxWorkload, Params, torch_data
from algobench.specs import Preset
from workloads.gpt2.model import GPTConfig
from workloads.jax_layers import Keys, attend, dense, layer_norm, layer_norm_params, normal

LN_EPS = 1e-5  # torch.nn.LayerNorm's default


def init_params(cfg: GPTConfig, key: jax.Array) -> Params:
    """GPT-2's init: N(0, 0.02) weights, zero biases, residual projections N(0, 0.02/sqrt(2 n_layer))."""
    keys, C = Keys(key), cfg.n_embd
    params = {"wte.weight": normal(keys(), (cfg.vocab_size, C), 0.02),
              "wpe.weight": normal(keys(), (cfg.block_size, C), 0.02)}
    shapes = {"attn.c_attn": (3 * C, C), "attn.c_proj": (C, C), "mlp.c_fc": (4 * C, C), "mlp.c_proj": (C, 4 * C)}
    for i in range(cfg.n_layer):
        p = f"h.{i}"
        params |= layer_norm_params(f"{p}.ln_1", C) | layer_norm_params(f"{p}.ln_2", C)
        for name, shape in shapes.items():
            std = 0.02 / math.sqrt(2 * cfg.n_layer) if name.endswith("c_proj") else 0.02
            params[f"{p}.{name}.weight"] = normal(keys(), shape, std)
            if cfg.bias:
                params[f"{p}.{name}.bias"] = jnp.zeros(shape[:1], jnp.float32)
    params |= layer_norm_params("ln_f", C)
    if not cfg.bias:
        params = {k: v for k, v in params.items() if not k.endswith(".bias")}
    return params


def causal_self_attention(params: Params, p: str, x: jax.Array, cfg: GPTConfig, dtype) -> jax.Array:
    q, k, v = jnp.split(dense(params, f"{p}.c_attn", x, dtype), 3, axis=-1)
    return dense(params, f"{p}.c_proj", attend(q, k, v, n_heads=cfg.n_head, causal=True), dtype)


def mlp(params: Params, p: str, x: jax.Array, dtype) -> jax.Array:
    return dense(params, f"{p}.c_proj", jax.nn.gelu(dense(params, f"{p}.c_fc", x, dtype), approximate=True), dtype)


def block(params: Params, p: str, x: jax.Array, cfg: GPTConfig, dtype) -> jax.Array:
    x = x + causal_self_attention(params, f"{p}.attn", layer_norm(params, f"{p}.ln_1", x, LN_EPS), cfg, dtype)
    return x + mlp(params, f"{p}.mlp", layer_norm(params, f"{p}.ln_2", x, LN_EPS), dtype)


def forward(params: Params, idx: jax.Array, cfg: GPTConfig, dtype=None) -> jax.Array:
    """Logits (batch, time, vocab) for token ids (batch, time)."""
    T = idx.shape[1]
    assert T <= cfg.block_size, f"sequence of {T} tokens exceeds block_size {cfg.block_size}"
    x = params["wte.weight"][idx] + params["wpe.weight"][:T]
    for i in range(cfg.n_layer):
        x = block(params, f"h.{i}", x, cfg, dtype)
    x = layer_norm(params, "ln_f", x, LN_EPS)
    wte = params["wte.weight"]  # tied embeddings: the head is the token embedding
    if dtype is not None:
        x, wte = x.astype(dtype), wte.astype(dtype)
    return x @ wte.T


# --- the workload ------------------------------------------------------------------------------

@dataclass
class Gpt2Jax(JaxWorkload):
    @property
    def cfg(self) -> GPTConfig:
        return self.preset.config.model

    def init_params(self, key: jax.Array) -> Params:
        return init_params(self.cfg, key)

    def model_fn(self, params: Params, batch: Batch) -> jax.Array:
        return forward(params, batch["inputs"], self.cfg, self.backend.compute_dtype)


def build(*, preset: Preset, size: str, data_dir: Path, backend: JaxBackend, build_torch) -> Gpt2Jax:
    """The JAX workload, reading its data through the torch workload `build_torch` builds."""
    return Gpt2Jax(name="gpt2", size=size, preset=preset, backend=backend,
                   data=torch_data(build_torch, preset=preset, size=size, data_dir=data_dir))
