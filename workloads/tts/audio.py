"""The audio front end: 16-bit PCM wav files, log-mel spectrograms, energy and pitch.

LJSpeech's conventions (and FastSpeech 2's, via HiFi-GAN's vocoder features): 22,050 Hz audio,
a 1024-point STFT with a 1024-sample Hann window and a hop of 256 samples (11.6 ms frames),
centred frames (reflect padding, so a clip of n samples has 1 + n // 256 frames), the STFT
magnitude through an 80-band Slaney-style mel filterbank from 0 to 8 kHz, then log(max(x, 1e-5)).
Energy is the L2 norm of a frame's STFT magnitude; pitch (F0, Hz) is estimated with YIN
(de Cheveigne & Kawahara, 2002) on the same frames, 0 where a frame is unvoiced.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from algobench.errors import UserError


class AudioConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sample_rate_hz: int = 22_050
    n_fft: int = 1024
    win_samples: int = 1024
    hop_samples: int = 256
    n_mels: int = 80
    fmin_hz: float = 0.0
    fmax_hz: float = 8_000.0
    log_floor: float = 1e-5  # mel magnitudes are clamped here before the log
    f0_min_hz: float = 65.0  # YIN's search range
    f0_max_hz: float = 800.0
    yin_threshold: float = 0.1  # a dip of the normalized difference below this is voiced


AUDIO = AudioConfig()


def n_frames(n_samples: int, cfg: AudioConfig = AUDIO) -> int:
    """Frames of a clip of `n_samples` under centred framing."""
    return 1 + n_samples // cfg.hop_samples


# --- wav files -------------------------------------------------------------------------------

def read_wav(path: Path, cfg: AudioConfig = AUDIO) -> np.ndarray:
    """A 16-bit PCM mono wav at the configured rate, as float32 in [-1, 1)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise UserError(f"{path}: expected 16-bit mono PCM, got {8 * w.getsampwidth()}-bit "
                            f"{w.getnchannels()}-channel audio")
        if w.getframerate() != cfg.sample_rate_hz:
            raise UserError(f"{path}: sample rate {w.getframerate()} Hz, expected {cfg.sample_rate_hz} Hz")
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


def wav_samples(path: Path) -> int:
    """The number of samples in a wav file, from its header."""
    with wave.open(str(path), "rb") as w:
        return w.getnframes()


def wav_bytes(pcm: np.ndarray, sample_rate_hz: int) -> bytes:
    """16-bit mono PCM samples as the bytes of a wav file."""
    import io

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate_hz)
        w.writeframes(np.asarray(pcm, dtype="<i2").tobytes())
    return buf.getvalue()


# --- mel spectrogram -------------------------------------------------------------------------

def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * (200.0 / 3)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log_part, linear)


def mel_filterbank(cfg: AudioConfig = AUDIO) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters on Slaney's mel scale, each scaled to unit
    area ("slaney" norm: 2 / bandwidth in Hz), as librosa.filters.mel(htk=False, norm='slaney')."""
    fft_hz = np.linspace(0.0, cfg.sample_rate_hz / 2, cfg.n_fft // 2 + 1)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(cfg.fmin_hz), hz_to_mel(cfg.fmax_hz), cfg.n_mels + 2))
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (fft_hz[None, :] - lower) / (centre - lower)
    falling = (upper - fft_hz[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return (weights * (2.0 / (upper - lower))).astype(np.float32)


class MelFrontEnd:
    """Waveform -> (log-mel spectrogram (frames, n_mels), energy (frames,)), in torch."""

    def __init__(self, cfg: AudioConfig = AUDIO, device: torch.device | str = "cpu") -> None:
        self.cfg = cfg
        self.window = torch.hann_window(cfg.win_samples, periodic=True, device=device)
        self.filterbank = torch.from_numpy(mel_filterbank(cfg)).to(device)

    def magnitude(self, wav: torch.Tensor) -> torch.Tensor:
        """|STFT| of a 1-D waveform: (n_fft // 2 + 1, frames)."""
        spec = torch.stft(wav, n_fft=self.cfg.n_fft, hop_length=self.cfg.hop_samples,
                          win_length=self.cfg.win_samples, window=self.window, center=True,
                          pad_mode="reflect", return_complex=True)
        return spec.abs()

    def __call__(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mag = self.magnitude(wav.float())
        mel = torch.log(torch.clamp(self.filterbank @ mag, min=self.cfg.log_floor))
        return mel.T.contiguous(), torch.linalg.vector_norm(mag, dim=0)


# --- pitch -----------------------------------------------------------------------------------

def yin(wav: np.ndarray, cfg: AudioConfig = AUDIO) -> np.ndarray:
    """F0 in Hz per centred frame (1 + n // hop frames), 0 where unvoiced.

    YIN on each frame of `win_samples` (reflect-padded like the STFT): the difference function
    d(tau) over an integration window of half a frame, normalized by its cumulative mean; the
    first dip below `yin_threshold` in [sr / f0_max, sr / f0_min] is the period, refined by a
    parabola through its neighbours. No dip below the threshold: unvoiced."""
    sr, hop, size = cfg.sample_rate_hz, cfg.hop_samples, cfg.win_samples
    width = size // 2  # integration window
    tau_min = int(np.floor(sr / cfg.f0_max_hz))
    tau_max = min(int(np.ceil(sr / cfg.f0_min_hz)), size - width - 1)
    x = np.pad(np.asarray(wav, dtype=np.float64), size // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(x, size)[::hop][:n_frames(len(wav), cfg)]

    # d(tau) = sum_j (x_j - x_{j+tau})^2 = e(0) + e(tau) - 2 r(tau), j over the integration window
    energy = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames ** 2, axis=1)], axis=1)
    taus = np.arange(tau_max + 2)
    e_tau = energy[:, taus + width] - energy[:, taus]
    n = size + width  # long enough for no circular wrap-around in the correlation
    cross = np.fft.irfft(np.fft.rfft(frames, n) * np.conj(np.fft.rfft(frames[:, :width], n)), n)[:, :tau_max + 2]
    diff = np.maximum(e_tau[:, :1] + e_tau - 2.0 * cross, 0.0)
    diff[:, 0] = 0.0

    # cumulative-mean-normalized difference: d'(tau) = d(tau) tau / sum_{k<=tau} d(k), d'(0) = 1
    cum = np.cumsum(diff[:, 1:], axis=1)
    cmnd = np.ones_like(diff)
    np.divide(diff[:, 1:] * taus[1:], cum, out=cmnd[:, 1:], where=cum > 1e-12)

    inner = cmnd[:, tau_min:tau_max + 1]
    dips = (inner < cfg.yin_threshold) & (inner <= cmnd[:, tau_min - 1:tau_max]) & (inner <= cmnd[:, tau_min + 1:tau_max + 2])
    voiced = dips.any(axis=1)
    tau = tau_min + dips.argmax(axis=1)
    rows = np.arange(len(frames))
    a, b, c = cmnd[rows, tau - 1], cmnd[rows, tau], cmnd[rows, tau + 1]
    curvature = a - 2 * b + c
    shift = np.where(curvature > 0, 0.5 * (a - c) / np.where(curvature > 0, curvature, 1.0), 0.0)
    return np.where(voiced, sr / (tau + np.clip(shift, -1, 1)), 0.0).astype(np.float32)


def per_phone(values: np.ndarray, durations: np.ndarray, *, interpolate_zeros: bool = False) -> np.ndarray:
    """Frame values averaged over each phone's frames (phones of 0 frames get 0).

    `interpolate_zeros`: unvoiced frames (F0 of 0) are first filled by linear interpolation
    between voiced ones, as FastSpeech 2's phoneme-level pitch is."""
    values = np.asarray(values, dtype=np.float64)
    if interpolate_zeros:
        voiced = np.flatnonzero(values > 0)
        values = np.interp(np.arange(len(values)), voiced, values[voiced]) if voiced.size else np.zeros_like(values)
    ends = np.cumsum(durations)
    csum = np.concatenate([[0.0], np.cumsum(values)])
    sums = csum[ends] - csum[ends - durations]
    means = np.where(durations > 0, sums / np.maximum(durations, 1), 0.0)
    return means.astype(np.float32)
