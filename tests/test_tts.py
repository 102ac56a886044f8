"""TTS workload: the synthesized set, LJSpeech-format preparation, batches, FastSpeech 2, training."""

from __future__ import annotations

import itertools
import json
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from algobench.errors import UserError
from algobench.frameworks.torch import TorchBackend
from workloads import WORKLOADS
from tests.helpers import ensure_smoke, run
from workloads.tts import audio, data
from workloads.tts import prepare as prep
from workloads.tts.espeak import espeak
from workloads.tts.features import load_symbols
from workloads.tts.model import FastSpeech2, FastSpeech2Config, length_regulate
from workloads.tts.textgrid import read_textgrid

CPU = TorchBackend.choose("cpu")


@pytest.fixture(scope="module")
def tts_dir(data_dir) -> Path:
    ensure_smoke("tts", data_dir)
    return prep.data_dir_for(data_dir, "smoke")


def workload(data_dir: Path, name: str = "tts"):
    spec = WORKLOADS.get(name)
    return spec.build_torch(preset=spec.presets["smoke"], size="smoke", data_dir=data_dir, backend=CPU)


# --- espeak-ng and the synthesized corpus ------------------------------------------------------

def test_espeak_gives_audio_and_phoneme_timings():
    speech = espeak().synthesize("Hello world, said the man.")
    assert speech.sample_rate_hz == 22_050 and speech.samples.dtype == np.int16
    assert len(speech.samples) > 0.8 * 22_050
    starts = [p.start_sample for p in speech.phones]
    assert starts == sorted(starts) and 0 <= starts[0] and starts[-1] <= len(speech.samples)
    assert [w.lower() for w in speech.words] == ["hello", "world", "said", "the", "man"]
    names = [p.name for p in speech.phones if p.name]
    assert {"h", "l", "w", "m"} <= set(names) and "" in {p.name for p in speech.phones}  # pauses too
    tiers = prep.speech_tiers(speech)
    for tier in tiers.values():  # contiguous from 0 to the end of the audio
        assert tier[0].start_s == 0 and tier[-1].end_s == pytest.approx(len(speech.samples) / 22_050)
        assert all(a.end_s == b.start_s for a, b in itertools.pairwise(tier))
    assert [iv.label.lower() for iv in tiers["words"] if iv.label] == ["hello", "world", "said", "the", "man"]


def test_corpus_is_ljspeech_format(tts_dir):
    corpus = tts_dir / "corpus"
    rows = prep.read_metadata(corpus)
    assert len(rows) == sum(prep.SYNTH["smoke"][s] for s in prep.SPLITS)
    assert all(len(r) == 3 and r[1] == r[2] for r in rows)
    with wave.open(str(corpus / "wavs" / f"{rows[0][0]}.wav"), "rb") as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (22_050, 2, 1)
    assert "phones" in read_textgrid(corpus / "TextGrid" / f"{rows[0][0]}.TextGrid")


@pytest.mark.parametrize("split", prep.SPLITS)
def test_durations_sum_to_mel_length_for_every_clip(tts_dir, split):
    index = np.load(tts_dir / f"{split}_index.npy")
    durations = np.load(tts_dir / f"{split}_durations.npy")
    mels = np.load(tts_dir / f"{split}_mels.npy", mmap_mode="r")
    ids = (tts_dir / f"{split}_ids.txt").read_text().split()
    assert len(ids) == len(index) == prep.SYNTH["smoke"][split]
    for clip, (p0, n_p, f0, n_f) in zip(ids, index):
        assert durations[p0:p0 + n_p].sum() == n_f
        assert n_f == audio.n_frames(audio.wav_samples(tts_dir / "corpus" / "wavs" / f"{clip}.wav"))
    assert index[-1, 2] + index[-1, 3] == len(mels) and index[-1, 0] + index[-1, 1] == len(durations)
    phones = np.load(tts_dir / f"{split}_phones.npy")
    assert phones.min() >= 1 and phones.max() < len(load_symbols(tts_dir))
    assert (np.load(tts_dir / f"{split}_pitch.npy")[durations > 0] > 50).all()  # Hz, interpolated


def test_full_size_reads_ljspeech_with_mfa_textgrids(tts_dir, tmp_path):
    """A tiny LJSpeech-1.1 folder (LJ001/LJ002 test, LJ003 val, others train) with nested TextGrids."""
    src = tts_dir / "corpus"
    rows = prep.read_metadata(src)[:8]
    lj = tmp_path / "LJSpeech-1.1"
    (lj / "wavs").mkdir(parents=True)
    (lj / "TextGrid" / "LJSpeech").mkdir(parents=True)
    names = ["LJ001-0001", "LJ002-0001", "LJ003-0001", "LJ003-0002", "LJ004-0001", "LJ004-0002", "LJ005-0001",
             "LJ006-0001"]
    for name, (clip, text, _) in zip(names, rows):
        shutil.copy(src / "wavs" / f"{clip}.wav", lj / "wavs" / f"{name}.wav")
        if name != "LJ006-0001":  # MFA failed on this one: skipped
            shutil.copy(src / "TextGrid" / f"{clip}.TextGrid", lj / "TextGrid" / "LJSpeech" / f"{name}.TextGrid")
    (lj / "metadata.csv").write_text("".join(f"{n}|{r[1]}|{r[1]}\n" for n, r in zip(names, rows)))
    out = prep.prepare("full", tmp_path / "data", source=lj)
    assert json.loads((out / prep.READY).read_text())["clips_without_alignment"] == 1
    assert (out / "test_ids.txt").read_text().split() == ["LJ001-0001", "LJ002-0001"]
    assert (out / "val_ids.txt").read_text().split() == ["LJ003-0001", "LJ003-0002"]
    assert len((out / "train_ids.txt").read_text().split()) == 3
    with pytest.raises(UserError, match="LJSpeech"):
        prep.prepare("full", tmp_path / "data")
    bare = tmp_path / "unaligned"
    shutil.copytree(lj, bare, ignore=shutil.ignore_patterns("TextGrid"))
    with pytest.raises(UserError, match="TextGrid"):
        prep.prepare("full", tmp_path / "data2", source=bare)


# --- batches -----------------------------------------------------------------------------------

def test_train_batches_are_deterministic_and_sliced_by_rank(tts_dir):
    split = data.load_split(tts_dir, "train")
    a = next(data.train_batches(split, seed=3, batch_size=8, device=torch.device("cpu"), start_step=5))
    b = next(data.train_batches(split, seed=3, batch_size=8, device=torch.device("cpu"), start_step=5))
    assert all(torch.equal(a[k], b[k]) for k in ("phones", "durations", "pitch"))
    assert torch.equal(a["targets"]["mels"], b["targets"]["mels"])
    clips = data.train_clips(len(split), split.index[:, 3], seed=3, step=5, batch_size=8, length_groups=4)
    rank1 = next(data.train_batches(split, seed=3, batch_size=8, device=torch.device("cpu"), start_step=5,
                                    rank=1, world_size=2))
    assert torch.equal(rank1["durations"].sum(1), torch.from_numpy(split.index[clips[4:], 3]))
    # the batch's frame mask covers each clip's frames, which its durations fill exactly
    assert torch.equal(a["targets"]["frame_mask"].sum(1), a["durations"].sum(1))


def test_eval_batches_cover_the_split_once(tts_dir):
    split = data.load_split(tts_dir, "val")
    batches = data.eval_batches(split, batch_size=20, device=torch.device("cpu"))
    assert sum(len(b["phones"]) for b in batches) == len(split)
    assert sum(int(b["targets"]["frame_mask"].sum()) for b in batches) == int(split.index[:, 3].sum())


# --- FastSpeech 2 ------------------------------------------------------------------------------

def test_length_regulator_repeats_each_phone_by_its_duration():
    gen = torch.Generator().manual_seed(0)
    durations = torch.randint(0, 5, (3, 7), generator=gen)
    durations[2, 5:] = 0  # padding phones
    x = torch.randn(3, 7, 4, generator=gen)
    n_frames = int(durations.sum(1).max()) + 2
    out, mask = length_regulate(x, durations, n_frames)
    for b in range(3):
        expected = torch.repeat_interleave(x[b], durations[b], dim=0)
        n = len(expected)
        assert torch.equal(out[b, :n], expected) and (out[b, n:] == 0).all()
        assert mask[b].tolist() == [True] * n + [False] * (n_frames - n)


def test_model_inference_and_postnet():
    cfg = FastSpeech2Config(width=32, n_heads=2, encoder_layers=1, decoder_layers=1, conv_filters=64,
                            variance_filters=32, n_bins=16, postnet_channels=32)
    model = FastSpeech2(cfg, n_symbols=10, pitch_range=(-2, 2), energy_range=(-1, 3)).eval()
    phones = torch.tensor([[3, 4, 5, 0], [6, 7, 8, 9]])
    with torch.no_grad():
        out = model(phones)  # durations, pitch and energy all predicted
    frames = torch.clamp(torch.round(torch.exp(out["log_durations"]) - 1), min=0) * (phones != 0)
    assert out["frame_mask"].sum(1).tolist() == frames.sum(1).long().tolist()
    assert out["mels_postnet"].shape == out["mels"].shape == (2, out["frame_mask"].shape[1], 80)
    assert (out["log_durations"][0, 3] == 0) and (out["pitch"][0, 3] == 0)  # padding phone


def test_loss_fn_contract_and_mel_loss_variants(tts_dir, data_dir):
    wl, wl_mse = workload(data_dir), workload(data_dir, "tts_mse")
    model = wl.init_model(seed=0)
    batch = next(wl.train_batches(seed=0, batch_size=4))
    with torch.no_grad():
        logits = wl.model_fn(model, batch)
        out, out_mse = wl.loss_fn(batch["targets"], logits), wl_mse.loss_fn(batch["targets"], logits)
    assert out["per_example"].shape == (4,) and int(out["n_valid_examples"]) == 4
    assert torch.allclose(out["summed"], out["per_example"].sum())
    t = batch["targets"]
    mask = t["frame_mask"][..., None]
    l1 = (((logits["mels"] - t["mels"]).abs() * mask).sum((1, 2)) / (mask.sum((1, 2)) * 80))
    l2 = ((((logits["mels"] - t["mels"]) ** 2) * mask).sum((1, 2)) / (mask.sum((1, 2)) * 80))
    assert torch.allclose(out["per_example"] - out_mse["per_example"], l1 - l2, atol=1e-4)


def test_training_steps_reduce_the_loss_and_eval_is_deterministic(tts_dir, data_dir):
    wl = workload(data_dir)
    model = wl.init_model(seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    batch = next(wl.train_batches(seed=0, batch_size=8))
    losses = []
    for _ in range(15):
        loss = wl.loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]
    first, second = wl.evaluate(model, "val"), wl.evaluate(model, "val")
    assert first == second and set(first) == {"mel_l1", "mel_mse", "duration_mse", "pitch_mse", "energy_mse", "loss"}
    assert model.training  # evaluate restores the mode


@pytest.mark.slow
def test_adamw_reaches_the_smoke_target(tts_dir, data_dir):
    """Steps, not seconds: on CPU the eval history is deterministic, the machine's load is not."""
    from algobench.specs import RunOptions, TrialConfig

    cfg = TrialConfig(workload="tts", size="smoke", submission="adamw", seed=1, data_dir=data_dir,
                      options=RunOptions(device="cpu", budget_s=1e6, max_steps=900))
    evals, end = run(cfg)
    assert end.status == "reached", (end.reason, [e.metrics["val_mel_l1"] for e in evals])
    assert end.steps_to_target <= 600
    assert evals[-1].metrics["val_mel_l1"] <= WORKLOADS.get("tts").presets["smoke"].target.value
