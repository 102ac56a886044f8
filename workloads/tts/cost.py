"""FastSpeech 2's parameters and training FLOPs per clip (algobench/flops.py states the accounting).

Per position and FFT block: projections 4 d^2, the conv feed-forward d f k1 + f d k2, attention
4 L d forward FLOPs (L: the sequence's length); the encoder runs over phones, the decoder over
frames; three variance predictors (two convs and a linear) over phones; the mel projection (and
PostNet, when on) over frames. An example is an LJSpeech clip of the corpus's mean length
(24 h / 13,100 clips = 6.6 s = 566 frames at 22,050 Hz with a hop of 256) with an estimated
83 phones (~12.6 phones per second of read English; MFA-aligned LJSpeech is close to it).
"""

from __future__ import annotations

from algobench.flops import ModelCost, n_params
from algobench.specs import Preset
from workloads.tts.model import FastSpeech2, FastSpeech2Config

MEAN_FRAMES, MEAN_PHONES = 566, 83
N_SYMBOLS = 74  # padding, unknown and MFA's 72 ARPAbet phones and silences: the table's size barely matters


def forward_flops(cfg: FastSpeech2Config, *, phones: int, frames: int) -> float:
    d, f, (k1, k2) = cfg.width, cfg.conv_filters, cfg.conv_kernels

    def fft(length: int) -> float:
        return 2 * length * (4 * d * d + d * f * k1 + f * d * k2) + 4 * length * length * d

    fv, kv = cfg.variance_filters, cfg.variance_kernel
    variance = 3 * 2 * phones * (d * fv * kv + fv * fv * kv + fv)
    flops = cfg.encoder_layers * fft(phones) + variance + cfg.decoder_layers * fft(frames)
    flops += 2 * frames * d * cfg.n_mels
    if cfg.postnet_channels:
        c = cfg.postnet_channels
        flops += 2 * frames * 5 * (cfg.n_mels * c + 3 * c * c + c * cfg.n_mels)
    return flops


def cost(preset: Preset) -> ModelCost:
    cfg = preset.config.model
    build = lambda: FastSpeech2(cfg, n_symbols=N_SYMBOLS, pitch_range=(0.0, 1.0), energy_range=(0.0, 1.0))  # noqa: E731
    return ModelCost(n_params=n_params(build),
                     train_flops_per_example=3 * forward_flops(cfg, phones=MEAN_PHONES, frames=MEAN_FRAMES),
                     example=f"one clip of {MEAN_PHONES} phones, {MEAN_FRAMES} mel frames (LJSpeech's mean)")
