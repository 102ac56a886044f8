"""FastSpeech 2 (Ren et al., 2021): phonemes -> mel-spectrogram, non-autoregressively.

Reading order: config -> sinusoidal positions -> FFT block (self-attention and a 1-D conv
feed-forward, each a post-LN residual as in FastSpeech) -> variance predictor -> length
regulator -> the model (encoder, variance adaptor with duration, pitch and energy predictors
and quantized pitch/energy embeddings, decoder, linear projection to mel bins, optional
Tacotron 2 PostNet). Pitch and energy are phone-level and normalized (FastSpeech 2's
reference implementation's default); their embedding bins span the training set's range. The
projection predicts mel frames normalized per bin (global mean-variance, as ESPnet's FastSpeech 2
trains): the output is de-normalized with the training set's mean and std, so that losses and
metrics are in log-mel units while the output layer does not have to learn a -5 offset.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from workloads.layers import SelfAttention


class FastSpeech2Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    width: int = Field(default=256, gt=0)  # hidden size of encoder, decoder and embeddings
    n_heads: int = Field(default=2, gt=0)
    encoder_layers: int = Field(default=4, gt=0)
    decoder_layers: int = Field(default=4, gt=0)
    conv_filters: int = 1024  # hidden channels of the FFT blocks' conv feed-forward
    conv_kernels: tuple[int, int] = (9, 1)
    variance_filters: int = 256
    variance_kernel: int = 3
    n_bins: int = 256  # quantization bins of the pitch and energy embeddings
    n_mels: int = 80
    postnet_channels: int = 0  # 0: no PostNet; Tacotron 2's is 512
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)  # FFT blocks
    variance_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)  # variance predictors


def sinusoids(length: int, width: int, device: torch.device) -> torch.Tensor:
    """(length, width) sinusoidal position encodings (Vaswani et al., 2017)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, width, 2, device=device, dtype=torch.float32) * (-math.log(10_000.0) / width))
    enc = torch.zeros(length, width, device=device)
    enc[:, 0::2] = torch.sin(pos * freq)
    enc[:, 1::2] = torch.cos(pos * freq[: width // 2])
    return enc


class ConvFeedForward(nn.Module):
    """FastSpeech's position-wise feed-forward: conv (kernel 9) -> ReLU -> conv (kernel 1)."""

    def __init__(self, width: int, filters: int, kernels: tuple[int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(width, filters, kernels[0], padding=kernels[0] // 2)
        self.conv2 = nn.Conv1d(filters, width, kernels[1], padding=kernels[1] // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(x.transpose(1, 2)))).transpose(1, 2)


class FFTBlock(nn.Module):
    """Feed-Forward Transformer block: x = LN(x + attn(x)); x = LN(x + convFF(x)); padding zeroed."""

    def __init__(self, cfg: FastSpeech2Config) -> None:
        super().__init__()
        self.attn = SelfAttention(cfg.width, cfg.n_heads)
        self.norm1 = nn.LayerNorm(cfg.width)
        self.ff = ConvFeedForward(cfg.width, cfg.conv_filters, cfg.conv_kernels)
        self.norm2 = nn.LayerNorm(cfg.width)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask[..., None]
        x = self.norm1(x + self.drop(self.attn(x, key_mask=mask))) * keep
        return self.norm2(x + self.drop(self.ff(x))) * keep


class FFTStack(nn.Module):
    def __init__(self, cfg: FastSpeech2Config, depth: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(FFTBlock(cfg) for _ in range(depth))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + sinusoids(x.shape[1], x.shape[2], x.device)
        for block in self.blocks:
            x = block(x, mask)
        return x


class VariancePredictor(nn.Module):
    """Two (conv -> ReLU -> LayerNorm -> dropout) layers and a linear output: one value per position."""

    def __init__(self, cfg: FastSpeech2Config) -> None:
        super().__init__()
        k, f = cfg.variance_kernel, cfg.variance_filters
        self.conv1 = nn.Conv1d(cfg.width, f, k, padding=k // 2)
        self.norm1 = nn.LayerNorm(f)
        self.conv2 = nn.Conv1d(f, f, k, padding=k // 2)
        self.norm2 = nn.LayerNorm(f)
        self.out = nn.Linear(f, 1)
        self.drop = nn.Dropout(cfg.variance_dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.norm1(F.relu(self.conv1(x.transpose(1, 2))).transpose(1, 2)))
        h = self.drop(self.norm2(F.relu(self.conv2(h.transpose(1, 2))).transpose(1, 2)))
        return self.out(h).squeeze(-1) * mask


def length_regulate(x: torch.Tensor, durations: torch.Tensor, n_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Repeat phone i of each row durations[i] times: (B, N, C) -> (B, n_frames, C), and the frame
    mask (True on the sum(durations) frames of each row, False on the padding after them)."""
    ends = torch.cumsum(durations, dim=1)  # (B, N): the frame after each phone's last
    frames = torch.arange(n_frames, device=x.device).expand(x.shape[0], n_frames).contiguous()
    phone = torch.searchsorted(ends, frames, right=True)  # the phone each frame belongs to
    mask = phone < durations.shape[1]
    phone = phone.clamp(max=durations.shape[1] - 1)
    out = torch.gather(x, 1, phone[..., None].expand(-1, -1, x.shape[2]))
    return out * mask[..., None], mask


class PostNet(nn.Module):
    """Tacotron 2's: five conv layers (kernel 5, batch norm, tanh on all but the last) predicting a
    residual added to the mel-spectrogram."""

    def __init__(self, n_mels: int, channels: int) -> None:
        super().__init__()
        dims = [n_mels, channels, channels, channels, channels, n_mels]
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Conv1d(a, b, 5, padding=2), nn.BatchNorm1d(b)) for a, b in itertools.pairwise(dims))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        h = mel.transpose(1, 2)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            h = torch.tanh(h) if i < len(self.layers) - 1 else h
        return mel + h.transpose(1, 2)


class FastSpeech2(nn.Module):
    def __init__(self, cfg: FastSpeech2Config, *, n_symbols: int, pitch_range: tuple[float, float],
                 energy_range: tuple[float, float], mel_mean: list[float] | None = None,
                 mel_std: list[float] | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(n_symbols, cfg.width, padding_idx=0)
        self.encoder = FFTStack(cfg, cfg.encoder_layers)
        self.duration = VariancePredictor(cfg)  # log(1 + frames) per phone
        self.pitch = VariancePredictor(cfg)
        self.energy = VariancePredictor(cfg)
        self.register_buffer("pitch_bins", torch.linspace(*pitch_range, cfg.n_bins - 1))
        self.register_buffer("energy_bins", torch.linspace(*energy_range, cfg.n_bins - 1))
        self.pitch_embed = nn.Embedding(cfg.n_bins, cfg.width)
        self.energy_embed = nn.Embedding(cfg.n_bins, cfg.width)
        self.decoder = FFTStack(cfg, cfg.decoder_layers)
        self.to_mel = nn.Linear(cfg.width, cfg.n_mels)  # predicts normalized mels (global mean-variance)
        self.register_buffer("mel_mean", torch.tensor(mel_mean or [0.0] * cfg.n_mels))
        self.register_buffer("mel_std", torch.tensor(mel_std or [1.0] * cfg.n_mels))
        self.postnet = PostNet(cfg.n_mels, cfg.postnet_channels) if cfg.postnet_channels else None

    def forward(self, phones: torch.Tensor, *, durations: torch.Tensor | None = None,
                pitch: torch.Tensor | None = None, energy: torch.Tensor | None = None,
                n_frames: int | None = None) -> dict[str, torch.Tensor]:
        """Mel frames for phone ids (B, N), 0 = padding. Durations (frames per phone), pitch and
        energy (normalized, per phone) given are used (training: teacher forcing); those not
        given are predicted (inference). `n_frames` pads the output (default: the longest row)."""
        mask = phones != 0
        x = self.encoder(self.embed(phones), mask)
        log_durations = self.duration(x, mask)
        pitch_pred = self.pitch(x, mask)
        p = (pitch_pred.detach() if pitch is None else pitch).float()
        x = x + self.pitch_embed(torch.bucketize(p, self.pitch_bins))
        energy_pred = self.energy(x, mask)
        e = (energy_pred.detach() if energy is None else energy).float()
        x = x + self.energy_embed(torch.bucketize(e, self.energy_bins))
        if durations is None:
            durations = torch.clamp(torch.round(torch.exp(log_durations.detach()) - 1), min=0).long() * mask
        if n_frames is None:
            n_frames = max(int(durations.sum(dim=1).max()), 1)
        h, frame_mask = length_regulate(x, durations, n_frames)
        mel = self.to_mel(self.decoder(h, frame_mask)) * self.mel_std + self.mel_mean
        out = {"mels": mel, "log_durations": log_durations, "pitch": pitch_pred, "energy": energy_pred,
               "frame_mask": frame_mask, "phone_mask": mask}
        if self.postnet is not None:
            out["mels_postnet"] = self.postnet(mel)
        return out
