"""DETR (Carion et al., 2020): a ResNet backbone, a transformer encoder-decoder over its feature
map with sine positional encodings, learned object queries, and class and box heads applied to
every decoder layer's output (the last is the prediction, the others feed the auxiliary losses).

Group DETR (Chen et al., 2022) trains `num_groups` groups of queries, each group matched one-to-
one to the objects independently (one-to-many overall), with self-attention kept inside each
group; inference uses the first group only, so the model at test time is plain DETR.

The backbone's module names follow torchvision's ResNet, so a torchvision ResNet-50 state dict
(`resnet50-*.pth`) loads into it; with such weights the batch norms are frozen and the stem and
first stage are not trained, as DETR does.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import nn


class ResNetConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    block: Literal["basic", "bottleneck"] = "bottleneck"
    layers: tuple[int, ...] = (3, 4, 6, 3)  # blocks per stage (ResNet-50)
    widths: tuple[int, ...] = (64, 128, 256, 512)  # stage widths (bottleneck output is 4x)
    stem_width: int = 64
    stem_kernel: int = 7
    stem_stride: int = 2
    stem_pool: bool = True  # 3x3 stride-2 max pool after the stem


class DetrConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    backbone: ResNetConfig = ResNetConfig()
    num_classes: int = 80  # object classes, without "no object"
    d_model: int = 256
    n_heads: int = 8
    enc_layers: int = 6
    dec_layers: int = 6
    ffn_dim: int = 2048
    dropout: float = 0.1
    pre_norm: bool = False  # DETR's `--pre_norm`: LayerNorm before attention and FFN (stable at high lr)
    num_queries: int = 100  # per group
    num_groups: int = 1  # Group DETR's query groups during training; 1 = DETR
    learned_tgt: bool = False  # decoder input: a learned content embedding per query instead of DETR's zeros


# --- backbone ------------------------------------------------------------------------------------

class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters (buffers, not parameters)."""

    def __init__(self, n: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        for name, value in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
            self.register_buffer(name, torch.full((n,), value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale[None, :, None, None] + shift[None, :, None, None]


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int, norm) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, width, 3, stride, 1, bias=False)
        self.bn1 = norm(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = norm(width)
        self.downsample = _shortcut(c_in, width, stride, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int, norm) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = norm(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)  # stride on the 3x3 (ResNet v1.5)
        self.bn2 = norm(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = norm(width * 4)
        self.downsample = _shortcut(c_in, width * 4, stride, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


def _shortcut(c_in: int, c_out: int, stride: int, norm) -> nn.Module | None:
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), norm(c_out))


class ResNet(nn.Module):
    """Stem, then stages (the first at stride 1, the others at stride 2); returns the last map."""

    def __init__(self, cfg: ResNetConfig, frozen_bn: bool = False) -> None:
        super().__init__()
        norm = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
        block = Bottleneck if cfg.block == "bottleneck" else BasicBlock
        self.conv1 = nn.Conv2d(3, cfg.stem_width, cfg.stem_kernel, cfg.stem_stride, cfg.stem_kernel // 2, bias=False)
        self.bn1 = norm(cfg.stem_width)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if cfg.stem_pool else nn.Identity()
        c_in = cfg.stem_width
        for i, (n_blocks, width) in enumerate(zip(cfg.layers, cfg.widths, strict=True)):
            blocks = []
            for j in range(n_blocks):
                blocks.append(block(c_in, width, 2 if (j == 0 and i > 0) else 1, norm))
                c_in = width * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.n_stages = len(cfg.layers)
        self.out_channels = c_in
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        for i in range(self.n_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return x


def sine_position_encoding(mask: torch.Tensor, n_feats: int, temperature: float = 10_000.0) -> torch.Tensor:
    """DETR's 2-D sine encoding (B, H, W, 2 * n_feats) of the valid (mask False) pixels'
    normalized coordinates: y features first, then x."""
    not_mask = (~mask).float()
    y = not_mask.cumsum(1)
    x = not_mask.cumsum(2)
    eps = 1e-6
    y = y / (y[:, -1:, :] + eps) * 2 * math.pi
    x = x / (x[:, :, -1:] + eps) * 2 * math.pi
    dim_t = temperature ** (2 * (torch.arange(n_feats, device=mask.device) // 2) / n_feats)
    pos_x, pos_y = x[..., None] / dim_t, y[..., None] / dim_t
    pos_x = torch.stack([pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()], -1).flatten(3)
    pos_y = torch.stack([pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()], -1).flatten(3)
    return torch.cat([pos_y, pos_x], -1)


# --- transformer (positions added to queries and keys at every layer) ----------------------------

class Residual(nn.Module):
    """x + dropout(f(x)) with a LayerNorm after (DETR's default) or before f (`pre_norm`)."""

    def __init__(self, cfg: DetrConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)
        self.pre_norm = cfg.pre_norm

    def forward(self, x: torch.Tensor, f) -> torch.Tensor:
        if self.pre_norm:
            return x + self.dropout(f(self.norm(x)))
        return self.norm(x + self.dropout(f(x)))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: DetrConfig) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(cfg.d_model, cfg.n_heads, dropout=cfg.dropout, batch_first=True)
        self.ffn = _ffn(cfg)
        self.res1, self.res2 = Residual(cfg), Residual(cfg)

    def forward(self, src, pos, pad_mask):
        def attend(x):
            return self.self_attn(x + pos, x + pos, x, key_padding_mask=pad_mask, need_weights=False)[0]
        return self.res2(self.res1(src, attend), self.ffn)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: DetrConfig) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(cfg.d_model, cfg.n_heads, dropout=cfg.dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(cfg.d_model, cfg.n_heads, dropout=cfg.dropout, batch_first=True)
        self.ffn = _ffn(cfg)
        self.res1, self.res2, self.res3 = Residual(cfg), Residual(cfg), Residual(cfg)

    def forward(self, tgt, query_pos, memory, pos, pad_mask, group_mask):
        def attend(x):
            q = x + query_pos
            return self.self_attn(q, q, x, attn_mask=group_mask, need_weights=False)[0]

        def cross(x):
            return self.cross_attn(x + query_pos, memory + pos, memory, key_padding_mask=pad_mask, need_weights=False)[0]
        return self.res3(self.res2(self.res1(tgt, attend), cross), self.ffn)


def _ffn(cfg: DetrConfig) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cfg.d_model, cfg.ffn_dim), nn.ReLU(), nn.Dropout(cfg.dropout),
                         nn.Linear(cfg.ffn_dim, cfg.d_model))


class MLP(nn.Module):
    def __init__(self, d_in: int, d_hidden: int, d_out: int, n_layers: int) -> None:
        super().__init__()
        dims = [d_in] + [d_hidden] * (n_layers - 1) + [d_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


# --- DETR ------------------------------------------------------------------------------------

class DETR(nn.Module):
    def __init__(self, cfg: DetrConfig, frozen_bn: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = ResNet(cfg.backbone, frozen_bn=frozen_bn)
        self.input_proj = nn.Conv2d(self.backbone.out_channels, cfg.d_model, 1)
        self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.enc_layers))
        self.encoder_norm = nn.LayerNorm(cfg.d_model) if cfg.pre_norm else nn.Identity()
        self.decoder = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.dec_layers))
        self.decoder_norm = nn.LayerNorm(cfg.d_model)
        self.query_embed = nn.Embedding(cfg.num_queries * cfg.num_groups, cfg.d_model)
        self.tgt_embed = nn.Embedding(cfg.num_queries * cfg.num_groups, cfg.d_model) if cfg.learned_tgt else None
        self.class_embed = nn.Linear(cfg.d_model, cfg.num_classes + 1)  # the last class is "no object"
        self.bbox_embed = MLP(cfg.d_model, cfg.d_model, 4, 3)
        for layer in (*self.encoder, *self.decoder):
            for p in layer.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)

    def forward(self, images: torch.Tensor, pad_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """images (B, 3, H, W), normalized; pad_mask (B, H, W) True on padding, or None.
        Returns `logits` (L, B, Q, num_classes + 1) and `boxes` (L, B, Q, 4), cxcywh in [0, 1] of
        the unpadded image, for each of the L decoder layers (the last is the prediction). In
        training Q counts every group's queries; in eval, only the first group's."""
        features = self.backbone(images)
        b, _, h, w = features.shape
        if pad_mask is None:
            mask = torch.zeros((b, h, w), dtype=torch.bool, device=images.device)
        else:
            mask = F.interpolate(pad_mask[:, None].float(), size=(h, w)).bool()[:, 0]
        pos = sine_position_encoding(mask, self.cfg.d_model // 2).flatten(1, 2)
        memory = self.input_proj(features).flatten(2).transpose(1, 2)  # (B, HW, d)
        key_pad = mask.flatten(1) if pad_mask is not None else None
        for layer in self.encoder:
            memory = layer(memory, pos, key_pad)
        memory = self.encoder_norm(memory)

        groups = self.cfg.num_groups if self.training else 1
        n_queries = self.cfg.num_queries * groups
        query_pos = self.query_embed.weight[:n_queries].unsqueeze(0).expand(b, -1, -1)
        group_mask = _group_attention_mask(self.cfg.num_queries, groups, images.device) if groups > 1 else None
        if self.tgt_embed is None:
            tgt = torch.zeros_like(query_pos)
        else:
            tgt = self.tgt_embed.weight[:n_queries].unsqueeze(0).expand(b, -1, -1)
        outputs = []
        for layer in self.decoder:
            tgt = layer(tgt, query_pos, memory, pos, key_pad, group_mask)
            outputs.append(self.decoder_norm(tgt))
        hs = torch.stack(outputs)  # (L, B, Q, d)
        return {"logits": self.class_embed(hs), "boxes": self.bbox_embed(hs).sigmoid()}


def _group_attention_mask(n_queries: int, n_groups: int, device: torch.device) -> torch.Tensor:
    """(Q*G, Q*G) bool, True where attention is blocked: queries attend within their group only."""
    group = torch.arange(n_queries * n_groups, device=device) // n_queries
    return group[:, None] != group[None, :]


def load_backbone(model: DETR, path: str) -> None:
    """Load a torchvision-format ResNet state dict into the backbone; freeze the stem and layer1."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    try:
        missing, unexpected = model.backbone.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"{path} is not a ResNet matching the backbone: {str(err).splitlines()[-1].strip()}") from None
    if unexpected or [k for k in missing if not k.endswith("num_batches_tracked")]:
        raise ValueError(f"{path} is not a ResNet matching the backbone: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    for name, p in model.backbone.named_parameters():
        if not name.startswith(("layer2", "layer3", "layer4")):
            p.requires_grad_(False)
