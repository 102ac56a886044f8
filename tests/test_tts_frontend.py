"""TTS front end: the torch log-mel against a direct numpy computation, YIN pitch, TextGrids."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workloads.tts import audio
from workloads.tts.textgrid import (
    SILENCE,
    Interval,
    TextGridError,
    parse_textgrid,
    phone_durations,
    read_textgrid,
    write_textgrid,
)

SR, HOP = 22_050, 256


# --- mel spectrogram ---------------------------------------------------------------------------

def slaney_filterbank_loops(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """librosa's mel filterbank (htk=False, norm='slaney') written out with plain loops."""
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0

    def hz2mel(f: float) -> float:
        return f / f_sp if f < min_log_hz else min_log_hz / f_sp + math.log(f / min_log_hz) / logstep

    def mel2hz(m: float) -> float:
        return m * f_sp if m < min_log_hz / f_sp else min_log_hz * math.exp(logstep * (m - min_log_hz / f_sp))

    lo_mel, hi_mel = hz2mel(fmin), hz2mel(fmax)
    edges = [mel2hz(lo_mel + (hi_mel - lo_mel) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    fb = np.zeros((n_mels, n_fft // 2 + 1))
    for m in range(n_mels):
        lo, c, hi = edges[m], edges[m + 1], edges[m + 2]
        for k in range(n_fft // 2 + 1):
            f = k * sr / n_fft
            if lo < f <= c:
                fb[m, k] = (f - lo) / (c - lo) * 2.0 / (hi - lo)
            elif c < f < hi:
                fb[m, k] = (hi - f) / (hi - c) * 2.0 / (hi - lo)
    return fb


def numpy_log_mel(wav: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reflect-pad by half a window, frame every 256 samples, periodic Hann, |rfft|, mel, log."""
    n_fft = 1024
    y = np.pad(wav.astype(np.float64), n_fft // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = np.stack([y[i * HOP:i * HOP + n_fft] * window for i in range(1 + len(wav) // HOP)])
    mag = np.abs(np.fft.rfft(frames, axis=1))
    mel = mag @ slaney_filterbank_loops(SR, n_fft, 80, 0.0, 8000.0).T
    return np.log(np.maximum(mel, 1e-5)), np.sqrt((mag ** 2).sum(axis=1))


def test_filterbank_matches_librosa_algorithm():
    fb = audio.mel_filterbank()
    ref = slaney_filterbank_loops(SR, 1024, 80, 0.0, 8000.0)
    assert fb.shape == (80, 513)
    np.testing.assert_allclose(fb, ref, rtol=1e-5, atol=1e-9)
    freqs = np.arange(513) * SR / 1024
    assert fb[:, freqs > 8000].max() == 0.0  # nothing above fmax
    assert float(audio.hz_to_mel(1000.0)) == pytest.approx(15.0)  # Slaney: linear to 1 kHz
    assert float(audio.mel_to_hz(audio.hz_to_mel(4321.0))) == pytest.approx(4321.0)


def test_torch_log_mel_matches_numpy():
    rng = np.random.default_rng(0)
    t = np.arange(int(0.6 * SR)) / SR
    wav = (0.3 * np.sin(2 * np.pi * (150 + 900 * t) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    mel, energy = audio.MelFrontEnd()(torch.from_numpy(wav))
    ref_mel, ref_energy = numpy_log_mel(wav)
    assert mel.shape == (audio.n_frames(len(wav)), 80) == ref_mel.shape
    np.testing.assert_allclose(mel.numpy(), ref_mel, atol=2e-3)
    np.testing.assert_allclose(energy.numpy(), ref_energy, rtol=1e-4)


def test_log_mel_of_silence_is_the_floor():
    mel, energy = audio.MelFrontEnd()(torch.zeros(SR // 2))
    assert torch.allclose(mel, torch.full_like(mel, math.log(1e-5)))
    assert energy.abs().max() == 0


# --- pitch -------------------------------------------------------------------------------------

def harmonic(f0: float, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return sum(0.3 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 6)).astype(np.float32)


@pytest.mark.parametrize("f0", [82.0, 110.0, 196.5, 440.0])
def test_yin_finds_the_fundamental(f0):
    est = audio.yin(harmonic(f0))
    assert len(est) == audio.n_frames(int(0.5 * SR))
    voiced = est[3:-3]  # frames away from the reflect-padded edges
    assert (voiced > 0).all()
    assert np.median(voiced) == pytest.approx(f0, rel=0.005)


def test_yin_silence_and_noise_are_unvoiced():
    assert (audio.yin(np.zeros(SR // 2, np.float32)) == 0).all()
    noise = np.random.default_rng(1).standard_normal(SR // 2).astype(np.float32) * 0.1
    assert (audio.yin(noise) == 0).mean() > 0.8


def test_yin_follows_a_pitch_change():
    est = audio.yin(np.concatenate([harmonic(120.0), harmonic(200.0)]))
    half = len(est) // 2
    assert np.median(est[5:half - 5]) == pytest.approx(120.0, rel=0.01)
    assert np.median(est[half + 5:-5]) == pytest.approx(200.0, rel=0.01)


def test_per_phone_interpolates_unvoiced_frames():
    f0 = np.array([100.0, 0.0, 0.0, 200.0, 200.0])
    got = audio.per_phone(f0, np.array([2, 0, 3]), interpolate_zeros=True)
    np.testing.assert_allclose(got, [(100 + 400 / 3) / 2, 0.0, (500 / 3 + 400) / 3], rtol=1e-6)
    np.testing.assert_allclose(audio.per_phone(np.arange(6.0), np.array([1, 2, 3])), [0.0, 1.5, 4.0])


# --- TextGrids ---------------------------------------------------------------------------------

LONG = '''File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 0.7
tiers? <exists>
size = 3
item []:
    item [1]:
        class = "IntervalTier"
        name = "words"
        xmin = 0
        xmax = 0.7
        intervals: size = 3
        intervals [1]:
            xmin = 0
            xmax = 0.05
            text = ""
        intervals [2]:
            xmin = 0.05
            xmax = 0.6
            text = "say ""hi"""
        intervals [3]:
            xmin = 0.6
            xmax = 0.7
            text = ""
    item [2]:
        class = "IntervalTier"
        name = "phones"
        xmin = 0
        xmax = 0.7
        intervals: size = 7
        intervals [1]:
            xmin = 0
            xmax = 0.05
            text = ""
        intervals [2]:
            xmin = 0.05
            xmax = 0.2
            text = "S"
        intervals [3]:
            xmin = 0.2
            xmax = 0.35
            text = "EY1"
        intervals [4]:
            xmin = 0.35
            xmax = 0.4
            text = "sp"
        intervals [5]:
            xmin = 0.4
            xmax = 0.45
            text = ""
        intervals [6]:
            xmin = 0.45
            xmax = 0.6
            text = "HH"
        intervals [7]:
            xmin = 0.6
            xmax = 0.7
            text = "sil"
    item [3]:
        class = "TextTier"
        name = "events"
        xmin = 0
        xmax = 0.7
        points: size = 1
        points [1]:
            number = 0.3
            mark = "click"
'''

SHORT = '''"ooTextFile"
"TextGrid"
0
0.7
<exists>
3
"IntervalTier"
"words"
0
0.7
3
0
0.05
""
0.05
0.6
"say ""hi"""
0.6
0.7
""
"IntervalTier"
"phones"
0
0.7
7
0
0.05
""
0.05
0.2
"S"
0.2
0.35
"EY1"
0.35
0.4
"sp"
0.4
0.45
""
0.45
0.6
"HH"
0.6
0.7
"sil"
"TextTier"
"events"
0
0.7
1
0.3
"click"
'''


def test_textgrid_long_and_short_formats_agree():
    long, short = parse_textgrid(LONG), parse_textgrid(SHORT)
    assert long == short
    assert list(long) == ["words", "phones"]  # the point tier is skipped
    assert long["words"][1] == Interval(0.05, 0.6, 'say "hi"')
    assert [iv.label for iv in long["phones"]] == ["", "S", "EY1", "sp", "", "HH", "sil"]


def test_textgrid_utf16_file(tmp_path):
    path = tmp_path / "a.TextGrid"
    path.write_bytes(LONG.replace("EY1", "eɪ").encode("utf-16"))
    assert read_textgrid(path)["phones"][2].label == "eɪ"


def test_textgrid_rejects_other_files(tmp_path):
    with pytest.raises(TextGridError):
        parse_textgrid('"ooTextFile"\n"Sound"\n0 1')
    path = tmp_path / "bad.TextGrid"
    path.write_text(LONG[: len(LONG) // 2])
    with pytest.raises(TextGridError, match="bad.TextGrid"):
        read_textgrid(path)


def test_textgrid_roundtrip():
    tiers = parse_textgrid(LONG)
    assert parse_textgrid(write_textgrid(tiers, 0.7)) == tiers


def test_phone_durations_sum_to_frames_with_silence_tokens():
    n_frames = audio.n_frames(int(0.7 * SR))
    labels, durations = phone_durations(parse_textgrid(LONG)["phones"], n_frames=n_frames, sample_rate_hz=SR,
                                        hop_samples=HOP)
    assert labels == [SILENCE, "S", "EY1", SILENCE, "HH", SILENCE]  # "sp" and "" merged, "sil" mapped
    assert durations.sum() == n_frames
    bounds = [round(t * SR / HOP) for t in (0.05, 0.2, 0.35, 0.45, 0.6)]
    assert durations.tolist() == np.diff([0, *bounds, n_frames]).tolist()


def test_phone_durations_leading_gap_and_mismatch():
    ivs = [Interval(0.1, 0.3, "AH0"), Interval(0.3, 0.5, "B")]
    n_frames = audio.n_frames(int(0.5 * SR))
    labels, durations = phone_durations(ivs, n_frames=n_frames, sample_rate_hz=SR, hop_samples=HOP)
    assert labels == [SILENCE, "AH0", "B"] and durations.sum() == n_frames and durations[0] == round(0.1 * SR / HOP)
    with pytest.raises(TextGridError, match="not the same clip"):
        phone_durations(ivs, n_frames=n_frames + 20, sample_rate_hz=SR, hop_samples=HOP)
