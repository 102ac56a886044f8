"""JAX versions of the shared layers (workloads/layers.py), in the same reading order, as pure
functions of a flat parameter dict named like the torch modules' parameters.

Initialisers -> dense and layer norm -> attention -> MLP -> block and encoder stack. Under a
compute dtype (bf16), matmuls and attention run in it while parameters, layer norms and the
residual stream stay float32, as under torch's autocast.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from workloads.layers import EncoderConfig

Params = dict[str, jax.Array]
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # exact (erf) GELU, BERT's
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),  # ViT's
    "relu": jax.nn.relu,
}


# --- initialisers (torch.nn.init's distributions) ---------------------------------------------

class Keys:
    """A fresh PRNG key per call, split off one root key."""

    def __init__(self, key: jax.Array) -> None:
        self._key = key

    def __call__(self) -> jax.Array:
        self._key, key = jax.random.split(self._key)
        return key


def normal(key: jax.Array, shape: tuple[int, ...], std: float) -> jax.Array:
    return std * jax.random.normal(key, shape, jnp.float32)


def uniform(key: jax.Array, shape: tuple[int, ...], bound: float) -> jax.Array:
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def xavier_uniform(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """torch's xavier_uniform_ on a (fan_out, fan_in, *receptive) weight."""
    receptive = math.prod(shape[2:])
    return uniform(key, shape, math.sqrt(6.0 / ((shape[0] + shape[1]) * receptive)))


def torch_linear(keys: Keys, prefix: str, n_in: int, n_out: int) -> Params:
    """torch's default nn.Linear init: weight and bias U(-1/sqrt(n_in), 1/sqrt(n_in))."""
    bound = 1.0 / math.sqrt(n_in)
    return {f"{prefix}.weight": uniform(keys(), (n_out, n_in), bound), f"{prefix}.bias": uniform(keys(), (n_out,), bound)}


def layer_norm_params(prefix: str, width: int) -> Params:
    return {f"{prefix}.weight": jnp.ones((width,), jnp.float32), f"{prefix}.bias": jnp.zeros((width,), jnp.float32)}


# --- dense and layer norm -------------------------------------------------------------------------

def dense(params: Params, prefix: str, x: jax.Array, dtype=None) -> jax.Array:
    """x @ W.T + b with torch's (out, in) weight layout, in `dtype` when given."""
    w, b = params[f"{prefix}.weight"], params.get(f"{prefix}.bias")
    if dtype is not None:
        x, w = x.astype(dtype), w.astype(dtype)
        b = None if b is None else b.astype(dtype)
    y = x @ w.T
    return y if b is None else y + b


def layer_norm(params: Params, prefix: str, x: jax.Array, eps: float) -> jax.Array:
    """LayerNorm over the last axis in float32 (autocast runs it in float32 too)."""
    x = x.astype(jnp.float32)
    mean = x.mean(-1, keepdims=True)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    y = (x - mean) * jax.lax.rsqrt(var + eps)
    w, b = params[f"{prefix}.weight"], params.get(f"{prefix}.bias")
    return y * w if b is None else y * w + b


# --- attention ---------------------------------------------------------------------------------

def attend(q: jax.Array, k: jax.Array, v: jax.Array, *, n_heads: int, causal: bool = False) -> jax.Array:
    """Multi-head dot-product attention of queries (B, Tq, C) over keys/values (B, Tk, C)."""
    B, Tq, C = q.shape
    heads = lambda t: t.reshape(t.shape[0], t.shape[1], n_heads, C // n_heads)  # noqa: E731
    y = jax.nn.dot_product_attention(heads(q), heads(k), heads(v.astype(q.dtype)), is_causal=causal)
    return y.reshape(B, Tq, C)


def self_attention(params: Params, prefix: str, x: jax.Array, *, n_heads: int, dtype=None) -> jax.Array:
    q, k, v = jnp.split(dense(params, f"{prefix}.qkv", x, dtype), 3, axis=-1)
    return dense(params, f"{prefix}.proj", attend(q, k, v, n_heads=n_heads), dtype)


# --- MLP, block, encoder -------------------------------------------------------------------------

def mlp(params: Params, prefix: str, x: jax.Array, *, activation: str, dtype=None) -> jax.Array:
    h = ACTIVATIONS[activation](dense(params, f"{prefix}.fc1", x, dtype))
    if f"{prefix}.glu.weight" in params:  # AlgoPerf's GLU: h * (Wg h)
        h = h * dense(params, f"{prefix}.glu", h, dtype)
    return dense(params, f"{prefix}.fc2", h, dtype)


def block(params: Params, prefix: str, x: jax.Array, cfg: EncoderConfig, dtype=None) -> jax.Array:
    """Attention then MLP, pre-LN or post-LN, as workloads/layers.py's Block (no dropout)."""
    attn = lambda h: self_attention(params, f"{prefix}.attn", h, n_heads=cfg.n_heads, dtype=dtype)  # noqa: E731
    ff = lambda h: mlp(params, f"{prefix}.mlp", h, activation=cfg.activation, dtype=dtype)  # noqa: E731
    norm1 = lambda h: layer_norm(params, f"{prefix}.norm1", h, cfg.norm_eps)  # noqa: E731
    norm2 = lambda h: layer_norm(params, f"{prefix}.norm2", h, cfg.norm_eps)  # noqa: E731
    if cfg.post_ln:
        x = norm1(x + attn(x))
        return norm2(x + ff(x))
    x = x + attn(norm1(x))
    return x + ff(norm2(x))


def encoder(params: Params, prefix: str, x: jax.Array, cfg: EncoderConfig, dtype=None) -> jax.Array:
    for i in range(cfg.depth):
        x = block(params, f"{prefix}.blocks.{i}", x, cfg, dtype)
    return x if cfg.post_ln else layer_norm(params, f"{prefix}.norm", x, cfg.norm_eps)


def init_encoder_xavier(keys: Keys, prefix: str, cfg: EncoderConfig) -> Params:
    """workloads/layers.py's `init_xavier` on an Encoder: Xavier-uniform weights (q, k, v each on
    its own square block), attention biases zero, MLP biases N(0, 1e-6), LayerNorms (1, 0)."""
    w, params = cfg.width, {}
    for i in range(cfg.depth):
        p = f"{prefix}.blocks.{i}"
        params |= layer_norm_params(f"{p}.norm1", w) | layer_norm_params(f"{p}.norm2", w)
        params[f"{p}.attn.qkv.weight"] = jnp.concatenate([xavier_uniform(keys(), (w, w)) for _ in range(3)])
        params[f"{p}.attn.qkv.bias"] = jnp.zeros((3 * w,), jnp.float32)
        params[f"{p}.attn.proj.weight"] = xavier_uniform(keys(), (w, w))
        params[f"{p}.attn.proj.bias"] = jnp.zeros((w,), jnp.float32)
        shapes = {"fc1": (cfg.mlp_dim, w), "fc2": (w, cfg.mlp_dim)} | ({"glu": (cfg.mlp_dim, cfg.mlp_dim)} if cfg.glu else {})
        for name, shape in shapes.items():
            params[f"{p}.mlp.{name}.weight"] = xavier_uniform(keys(), shape)
            params[f"{p}.mlp.{name}.bias"] = normal(keys(), shape[:1], 1e-6)
    if not cfg.post_ln:
        params |= layer_norm_params(f"{prefix}.norm", w)
    return params
