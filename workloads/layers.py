"""Transformer layers shared by the encoder workloads (ViT, BERT), in reading order.

Config -> attention (`scaled_dot_product_attention`: flash / memory-efficient kernels on GPU)
-> MLP (GELU or ReLU, optionally AlgoPerf's GLU) -> block (pre-LN or post-LN) -> encoder stack
-> the two initialisations the models use. Workloads vary these through `EncoderConfig` flags,
so a variant is the same code with another config.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

Activation = Literal["gelu", "gelu_tanh", "relu"]
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,  # exact (erf) GELU, BERT's
    "gelu_tanh": functools.partial(F.gelu, approximate="tanh"),  # ViT's (AlgoPerf, big_vision)
    "relu": F.relu,
}


class EncoderConfig(BaseModel):
    """A stack of transformer blocks: sizes in features, not bytes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    width: int = Field(gt=0)  # model dimension
    depth: int = Field(gt=0)  # number of blocks
    n_heads: int = Field(gt=0)
    mlp_dim: int = Field(gt=0)  # hidden features of the MLP
    post_ln: bool = False  # LayerNorm after each residual sum (BERT) instead of before each branch
    activation: Activation = "gelu"
    glu: bool = False  # AlgoPerf's ViT GLU: h = act(W1 x); h = h * (Wg h)
    norm_eps: float = 1e-6
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)  # on residual branches and attention probs

    @model_validator(mode="after")
    def _heads_divide_width(self) -> EncoderConfig:
        if self.width % self.n_heads:
            raise ValueError(f"width {self.width} is not divisible by n_heads {self.n_heads}")
        return self


# --- attention -------------------------------------------------------------------------------

def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, n_heads: int,
           key_mask: torch.Tensor | None = None, causal: bool = False, dropout: float = 0.0) -> torch.Tensor:
    """Multi-head dot-product attention of queries (B, Tq, C) over keys/values (B, Tk, C).

    `key_mask` (B, Tk) is True where a key may be attended (False: padding)."""
    B, Tq, C = q.shape
    Tk = k.shape[1]
    hd = C // n_heads
    q = q.view(B, Tq, n_heads, hd).transpose(1, 2)
    k = k.view(B, Tk, n_heads, hd).transpose(1, 2)
    v = v.view(B, Tk, n_heads, hd).transpose(1, 2)
    mask = key_mask[:, None, None, :] if key_mask is not None else None
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal)
    return y.transpose(1, 2).reshape(B, Tq, C)


class SelfAttention(nn.Module):
    def __init__(self, width: int, n_heads: int, *, dropout: float = 0.0, causal: bool = False) -> None:
        super().__init__()
        self.n_heads, self.dropout, self.causal = n_heads, dropout, causal
        self.qkv = nn.Linear(width, 3 * width)  # fused query, key, value projections
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        y = attend(q, k, v, n_heads=self.n_heads, key_mask=key_mask, causal=self.causal,
                   dropout=self.dropout if self.training else 0.0)
        return self.proj(y)


# --- MLP -------------------------------------------------------------------------------------

class MLP(nn.Module):
    def __init__(self, width: int, hidden: int, *, activation: Activation = "gelu", glu: bool = False) -> None:
        super().__init__()
        self.act = ACTIVATIONS[activation]
        self.fc1 = nn.Linear(width, hidden)
        self.glu = nn.Linear(hidden, hidden) if glu else None
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc1(x))
        if self.glu is not None:
            h = h * self.glu(h)
        return self.fc2(h)


# --- block and encoder -----------------------------------------------------------------------

class Block(nn.Module):
    """Attention then MLP, each a residual branch; LayerNorm before each branch (pre-LN) or
    after each residual sum (post-LN, as the original Transformer and BERT)."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.post_ln = cfg.post_ln
        self.norm1 = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
        self.attn = SelfAttention(cfg.width, cfg.n_heads, dropout=cfg.dropout)
        self.norm2 = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
        self.mlp = MLP(cfg.width, cfg.mlp_dim, activation=cfg.activation, glu=cfg.glu)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.post_ln:
            x = self.norm1(x + self.drop(self.attn(x, key_mask)))
            return self.norm2(x + self.drop(self.mlp(x)))
        x = x + self.drop(self.attn(self.norm1(x), key_mask))
        return x + self.drop(self.mlp(self.norm2(x)))


class Encoder(nn.Module):
    """`depth` blocks; a pre-LN stack ends with a LayerNorm (a post-LN one is normalised already)."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = None if cfg.post_ln else nn.LayerNorm(cfg.width, eps=cfg.norm_eps)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, key_mask)
        return x if self.norm is None else self.norm(x)


# --- initialisations -------------------------------------------------------------------------

@torch.no_grad()
def init_xavier(module: nn.Module) -> None:
    """AlgoPerf's ViT: Xavier-uniform linear weights (query, key and value each on its own square
    matrix, as if unfused), attention biases zero, MLP biases N(0, 1e-6)."""
    for m in module.modules():
        if isinstance(m, SelfAttention):
            for w in m.qkv.weight.chunk(3, dim=0):
                nn.init.xavier_uniform_(w)
            nn.init.xavier_uniform_(m.proj.weight)
            nn.init.zeros_(m.qkv.bias)
            nn.init.zeros_(m.proj.bias)
        elif isinstance(m, MLP):
            for lin in (m.fc1, m.glu, m.fc2):
                if lin is not None:
                    nn.init.xavier_uniform_(lin.weight)
                    nn.init.normal_(lin.bias, std=1e-6)


@torch.no_grad()
def init_normal(module: nn.Module, std: float = 0.02) -> None:
    """BERT's: linear and embedding weights N(0, std), biases zero, LayerNorms (1, 0)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=std)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
