"""DETR's parameters and training FLOPs per image (algobench/flops.py states the accounting).

The backbone's convolutions are counted layer by layer on the image's size (2 k^2 C_in C_out
FLOPs per output pixel); the transformer per token: encoder 4 d^2 + 2 d f and attention 4 S d
over the S = h w feature-map tokens; decoder per query: self-attention 4 d^2 and 4 Q d, cross-
attention 2 d^2 per query and 2 d^2 per memory token (keys, values) and 4 S d, FFN 2 d f, heads
on every decoder layer's output. Training counts every query group (Group DETR). An example is
one image at the preset's eval scale with COCO's usual 4:3 aspect (800 x 1,067 at full size).
"""

from __future__ import annotations

from algobench.flops import ModelCost, n_params
from algobench.specs import Preset
from workloads.detr.model import DETR, DetrConfig, ResNetConfig


def _out(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def backbone_flops(cfg: ResNetConfig, height: int, width: int) -> tuple[float, int, int, int]:
    """Forward FLOPs of the ResNet on an image, and its output map's (channels, h, w)."""
    flops = 0.0

    def conv(c_in: int, c_out: int, k: int, stride: int, h: int, w: int) -> tuple[int, int]:
        nonlocal flops
        h, w = _out(h, k, stride, k // 2), _out(w, k, stride, k // 2)
        flops += 2 * k * k * c_in * c_out * h * w
        return h, w

    h, w = conv(3, cfg.stem_width, cfg.stem_kernel, cfg.stem_stride, height, width)
    if cfg.stem_pool:
        h, w = _out(h, 3, 2, 1), _out(w, 3, 2, 1)
    c_in = cfg.stem_width
    for i, (n_blocks, width_i) in enumerate(zip(cfg.layers, cfg.widths, strict=True)):
        for j in range(n_blocks):
            stride = 2 if (j == 0 and i > 0) else 1
            c_out = width_i * (4 if cfg.block == "bottleneck" else 1)
            if stride != 1 or c_in != c_out:
                conv(c_in, c_out, 1, stride, h, w)  # the shortcut
            if cfg.block == "bottleneck":
                h1, w1 = conv(c_in, width_i, 1, 1, h, w)
                h2, w2 = conv(width_i, width_i, 3, stride, h1, w1)
                h, w = conv(width_i, c_out, 1, 1, h2, w2)
            else:
                h1, w1 = conv(c_in, width_i, 3, stride, h, w)
                h, w = conv(width_i, width_i, 3, 1, h1, w1)
            c_in = c_out
    return flops, c_in, h, w


def forward_flops(cfg: DetrConfig, height: int, width: int, *, train: bool = True) -> float:
    flops, channels, h, w = backbone_flops(cfg.backbone, height, width)
    d, f, S = cfg.d_model, cfg.ffn_dim, h * w
    Q = cfg.num_queries * (cfg.num_groups if train else 1)
    flops += 2 * S * channels * d  # input projection
    flops += cfg.enc_layers * (2 * S * (4 * d * d + 2 * d * f) + 4 * S * S * d)
    decoder = 2 * Q * 4 * d * d + 4 * Q * Q * d  # self-attention
    decoder += 2 * Q * 2 * d * d + 2 * S * 2 * d * d + 4 * Q * S * d  # cross-attention
    decoder += 2 * Q * 2 * d * f
    heads = 2 * Q * (d * (cfg.num_classes + 1) + 2 * d * d + 4 * d)
    return flops + cfg.dec_layers * (decoder + heads)


def example_size(preset: Preset) -> tuple[int, int]:
    data = preset.config.data
    return data.eval_scale, min(round(data.eval_scale * 4 / 3), data.max_size)


def cost(preset: Preset) -> ModelCost:
    cfg = preset.config.model
    h, w = example_size(preset)
    return ModelCost(n_params=n_params(lambda: DETR(cfg)), train_flops_per_example=3 * forward_flops(cfg, h, w),
                     example=f"one {h}x{w} image")
