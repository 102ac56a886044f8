"""Features of an aligned corpus, per split, as flat arrays (memory-mapped when training).

For each split: `<split>_mels.npy` (all frames, float32 (frames, 80)), `<split>_phones.npy`
(symbol ids), `<split>_durations.npy` (frames per phone), `<split>_pitch.npy` (Hz) and
`<split>_energy.npy` (phone-level means), `<split>_index.npy` (per clip: first phone, phones,
first frame, frames) and `<split>_ids.txt`. `symbols.json` lists the phone symbols (0: padding,
1: a symbol unseen in training) and `stats.json` the training-set statistics: pitch and energy
mean and std (and the normalized min and max, for the embedding bins), each mel bin's mean and std.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import torch

from algobench.errors import UserError
from algobench.files import atomic_write, write_json
from workloads.tts import audio
from workloads.tts.textgrid import Interval, TextGridError, phone_durations, read_textgrid

PAD, UNK = "<pad>", "<unk>"


def save_array(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array))
    atomic_write(path, buf.getvalue())


def clip_features(wav: np.ndarray, intervals: list[Interval], front: audio.MelFrontEnd,
                  cfg: audio.AudioConfig = audio.AUDIO) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(labels, durations, log-mel, phone pitch Hz, phone energy) of one clip."""
    mel, energy = front(torch.from_numpy(wav))
    labels, durations = phone_durations(intervals, n_frames=mel.shape[0], sample_rate_hz=cfg.sample_rate_hz,
                                        hop_samples=cfg.hop_samples)
    pitch = audio.per_phone(audio.yin(wav, cfg), durations, interpolate_zeros=True)
    return labels, durations, mel.numpy(), pitch, audio.per_phone(energy.numpy(), durations)


def build(corpus: Path, grids: dict[str, Path], splits: dict[str, list[str]], out: Path, *,
          progress: bool = False, cfg: audio.AudioConfig = audio.AUDIO) -> dict:
    """Write every split's features to `out`; returns counts for READY.json."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one clip's STFT is too small to share: threads only contend
    try:
        return _build(corpus, grids, splits, out, progress=progress, cfg=cfg)
    finally:
        torch.set_num_threads(threads)


def _build(corpus: Path, grids: dict[str, Path], splits: dict[str, list[str]], out: Path, *,
           progress: bool, cfg: audio.AudioConfig) -> dict:
    front = audio.MelFrontEnd(cfg)
    labels_by_split: dict[str, list[list[str]]] = {}
    counts = {}
    with progress_bar(sum(map(len, splits.values())), progress, "tts features") as advance:
        for split, ids in splits.items():
            frames = [audio.n_frames(audio.wav_samples(corpus / "wavs" / f"{i}.wav"), cfg) for i in ids]
            tmp = out / f".{split}_mels.npy.tmp"
            mels = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(sum(frames), cfg.n_mels))
            index = np.zeros((len(ids), 4), dtype=np.int64)
            labels, durs, pitch, energy = [], [], [], []
            phone_at, frame_at = 0, 0
            for k, clip in enumerate(ids):
                try:
                    tiers = read_textgrid(grids[clip])
                    if "phones" not in tiers:
                        raise TextGridError(f"{grids[clip]}: no 'phones' tier (tiers: {', '.join(tiers)})")
                    lab, dur, mel, pit, ene = clip_features(audio.read_wav(corpus / "wavs" / f"{clip}.wav", cfg),
                                                            tiers["phones"], front, cfg)
                except TextGridError as err:
                    raise UserError(f"clip {clip}: {err}") from None
                mels[frame_at:frame_at + len(mel)] = mel
                index[k] = (phone_at, len(lab), frame_at, len(mel))
                labels.append(lab), durs.append(dur), pitch.append(pit), energy.append(ene)
                phone_at, frame_at = phone_at + len(lab), frame_at + len(mel)
                advance()
            mels.flush()
            del mels
            os.replace(tmp, out / f"{split}_mels.npy")
            save_array(out / f"{split}_index.npy", index)
            save_array(out / f"{split}_durations.npy", np.concatenate(durs).astype(np.int32))
            save_array(out / f"{split}_pitch.npy", np.concatenate(pitch).astype(np.float32))
            save_array(out / f"{split}_energy.npy", np.concatenate(energy).astype(np.float32))
            atomic_write(out / f"{split}_ids.txt", ("\n".join(ids) + "\n").encode())
            labels_by_split[split] = labels
            counts[split] = {"clips": len(ids), "frames": frame_at, "phones": phone_at}

    symbols = [PAD, UNK, *sorted({p for lab in labels_by_split["train"] for p in lab})]
    lookup = {s: i for i, s in enumerate(symbols)}
    for split, labels in labels_by_split.items():
        ids = [lookup.get(p, 1) for lab in labels for p in lab]
        save_array(out / f"{split}_phones.npy", np.array(ids, dtype=np.int32))
    write_json(out / "symbols.json", symbols)
    write_json(out / "stats.json", _stats(out))
    return {"clips": counts, "symbols": len(symbols)}


def _stats(out: Path) -> dict:
    """Mean and std of the training set's phone-level pitch and energy (phones of >= 1 frame),
    the min and max of the normalized values, and each mel bin's mean and std over all frames."""
    voiced = np.load(out / "train_durations.npy") > 0
    stats = {}
    for name in ("pitch", "energy"):
        values = np.load(out / f"train_{name}.npy")[voiced].astype(np.float64)
        mean, std = float(values.mean()), float(values.std() or 1.0)
        z = (values - mean) / std
        stats[name] = {"mean": mean, "std": std, "min": float(z.min()), "max": float(z.max())}
    mels = np.load(out / "train_mels.npy", mmap_mode="r")
    total, total_sq = np.zeros(mels.shape[1]), np.zeros(mels.shape[1])
    for i in range(0, len(mels), 65_536):
        chunk = np.asarray(mels[i:i + 65_536], dtype=np.float64)
        total += chunk.sum(axis=0)
        total_sq += (chunk ** 2).sum(axis=0)
    mean = total / len(mels)
    stats["mel"] = {"mean": mean.tolist(), "std": np.sqrt(np.maximum(total_sq / len(mels) - mean ** 2, 1e-8)).tolist()}
    return stats


def load_stats(folder: Path) -> dict:
    return json.loads((folder / "stats.json").read_text())


def load_symbols(folder: Path) -> list[str]:
    return json.loads((folder / "symbols.json").read_text())


class progress_bar:
    """A rich progress bar for long builds (small, full); silent otherwise. Yields `advance()`."""

    def __init__(self, total: int, show: bool, what: str) -> None:
        self.total, self.show, self.what = total, show, what

    def __enter__(self):
        if not self.show:
            return lambda: None
        from rich.progress import Progress

        self.bar = Progress(transient=True)
        self.bar.start()
        task = self.bar.add_task(self.what, total=self.total)
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc) -> None:
        if self.show:
            self.bar.stop()
