"""Vision Transformer (Dosovitskiy et al. 2021) as AlgoPerf's imagenet_vit: patch embedding by a
strided convolution, fixed 2-D sin-cos positions, pre-LN encoder, global average pooling (or a
class token, or multihead attention pooling), a tanh pre-logits layer and a zero-initialised head.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from workloads.layers import MLP, EncoderConfig, Encoder, attend, init_xavier

VIT_S = EncoderConfig(width=384, depth=12, n_heads=6, mlp_dim=1536, activation="gelu_tanh")  # ViT-S


class ViTConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    image_size: int = Field(default=224, gt=0)  # pixels, square
    channels: int = 3
    patch_size: int = Field(default=16, gt=0)  # pixels
    n_classes: int = 1000
    encoder: EncoderConfig = VIT_S
    pool: Literal["gap", "cls", "map"] = "gap"  # mean of tokens, class token, attention pooling
    rep_size: bool = True  # pre-logits Linear(width, width) + tanh, as AlgoPerf
    head_zeroinit: bool = True

    @model_validator(mode="after")
    def _patches_tile_image(self) -> ViTConfig:
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.encoder.width % 4:
            raise ValueError("the 2-D sin-cos position embedding needs a width divisible by 4")
        return self


def posemb_sincos_2d(h: int, w: int, width: int, temperature: float = 10_000.0) -> torch.Tensor:
    """Fixed positions (h*w, width) for an h x w grid of patches, row-major (MoCo v3, big_vision)."""
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    omega = 1.0 / temperature ** (torch.arange(width // 4) / (width // 4 - 1))
    y = y.flatten()[:, None] * omega[None, :]
    x = x.flatten()[:, None] * omega[None, :]
    return torch.cat((x.sin(), x.cos(), y.sin(), y.cos()), dim=1)


class MAPHead(nn.Module):
    """Multihead attention pooling: a learned probe attends over the tokens, then a residual MLP."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.probe = nn.Parameter(torch.empty(1, 1, cfg.width))
        self.q = nn.Linear(cfg.width, cfg.width)
        self.kv = nn.Linear(cfg.width, 2 * cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.width)
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
        self.mlp = MLP(cfg.width, cfg.mlp_dim, activation=cfg.activation)
        nn.init.xavier_uniform_(self.probe.view(1, -1))
        for lin in (self.q, self.proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
        for w in self.kv.weight.chunk(2, dim=0):
            nn.init.xavier_uniform_(w)
        nn.init.zeros_(self.kv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, v = self.kv(x).chunk(2, dim=-1)
        q = self.q(self.probe.expand(x.shape[0], -1, -1))
        y = self.proj(attend(q, k, v, n_heads=self.n_heads))
        y = y + self.mlp(self.norm(y))
        return y[:, 0]


class ViT(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        width, grid = cfg.encoder.width, cfg.image_size // cfg.patch_size
        self.patch = nn.Conv2d(cfg.channels, width, cfg.patch_size, stride=cfg.patch_size)
        self.register_buffer("posemb", posemb_sincos_2d(grid, grid, width)[None], persistent=False)
        self.cls = nn.Parameter(torch.zeros(1, 1, width)) if cfg.pool == "cls" else None
        self.encoder = Encoder(cfg.encoder)
        self.map = MAPHead(cfg.encoder) if cfg.pool == "map" else None
        self.pre_logits = nn.Linear(width, width) if cfg.rep_size else None
        self.head = nn.Linear(width, cfg.n_classes)
        init_xavier(self.encoder)  # the patch embedding and pre-logits keep torch's default init
        if cfg.head_zeroinit:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_classes) for normalised images (B, channels, H, W)."""
        x = self.patch(images).flatten(2).transpose(1, 2) + self.posemb  # (B, N, width)
        if self.cls is not None:
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.encoder(x)
        if self.cfg.pool == "map":
            x = self.map(x)
        elif self.cfg.pool == "cls":
            x = x[:, 0]
        else:
            x = x.mean(dim=1)
        if self.pre_logits is not None:
            x = torch.tanh(self.pre_logits(x))
        return self.head(x)
