"""Batches of prepared TTS features: padded phones, durations, pitch, energy and mel frames.

Training batches depend only on (seed, step): step s draws a group of `length_groups` batches'
worth of clips at random (FastSpeech 2's reference implementation groups by length the same
way), sorts them by length and takes the (s mod length_groups)-th slice, so that a batch's
clips have similar lengths and little padding. Rank r of W takes its slice of the global batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from workloads.tts.features import load_stats


@dataclass(frozen=True)
class Split:
    """One split's features, the clips' rows in `index` (phone_start, n_phones, frame_start, n_frames)."""

    index: np.ndarray
    phones: np.ndarray
    durations: np.ndarray
    pitch: np.ndarray  # normalized
    energy: np.ndarray  # normalized
    mels: np.ndarray  # (frames, n_mels), memory-mapped

    def __len__(self) -> int:
        return len(self.index)


def load_split(folder: Path, split: str) -> Split:
    stats = load_stats(folder)

    def arr(name: str, mmap: bool = False) -> np.ndarray:
        return np.load(folder / f"{split}_{name}.npy", mmap_mode="r" if mmap else None)

    durations = arr("durations").astype(np.int64)
    norm = {}
    for name in ("pitch", "energy"):  # normalized; phones of 0 frames sit at the mean
        z = (arr(name).astype(np.float32) - stats[name]["mean"]) / stats[name]["std"]
        norm[name] = np.where(durations > 0, z, 0.0).astype(np.float32)
    return Split(index=arr("index"), phones=arr("phones").astype(np.int64), durations=durations,
                 pitch=norm["pitch"], energy=norm["energy"], mels=arr("mels", mmap=True))


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def collate(split: Split, clips: np.ndarray, *, pad_multiple: int = 1) -> dict[str, np.ndarray]:
    """Padded numpy arrays for `clips` (phones padded with 0, frames with zeros)."""
    rows = split.index[clips]
    n_phones = _round_up(int(rows[:, 1].max()), pad_multiple)
    n_frames = _round_up(int(rows[:, 3].max()), pad_multiple)
    b = len(clips)
    out = {"phones": np.zeros((b, n_phones), np.int64), "durations": np.zeros((b, n_phones), np.int64),
           "pitch": np.zeros((b, n_phones), np.float32), "energy": np.zeros((b, n_phones), np.float32),
           "mels": np.zeros((b, n_frames, split.mels.shape[1]), np.float32)}
    for i, (p0, n_p, f0, n_f) in enumerate(rows):
        for key in ("phones", "durations", "pitch", "energy"):
            out[key][i, :n_p] = getattr(split, key)[p0:p0 + n_p]
        out["mels"][i, :n_f] = split.mels[f0:f0 + n_f]
    out["n_frames"] = rows[:, 3].copy()
    return out


def to_batch(arrays: dict[str, np.ndarray], device: torch.device) -> dict:
    """Tensors on `device`: the model's inputs at the top level, the loss's targets in `targets`."""
    pin = device.type == "cuda"
    t = {}
    for key, value in arrays.items():
        tensor = torch.from_numpy(value)
        t[key] = (tensor.pin_memory() if pin else tensor).to(device, non_blocking=True)
    frame_mask = torch.arange(t["mels"].shape[1], device=device)[None, :] < t["n_frames"][:, None]
    phone_mask = t["phones"] != 0
    return {"phones": t["phones"], "durations": t["durations"], "pitch": t["pitch"], "energy": t["energy"],
            "targets": {"mels": t["mels"], "log_durations": torch.log1p(t["durations"].float()),
                        "pitch": t["pitch"], "energy": t["energy"], "frame_mask": frame_mask,
                        "phone_mask": phone_mask}}


def train_clips(n_clips: int, lengths: np.ndarray, *, seed: int, step: int, batch_size: int,
                length_groups: int) -> np.ndarray:
    """The global batch of step `step`: clips of similar length, deterministic from (seed, step)."""
    group = np.random.default_rng([seed, step // length_groups]).integers(0, n_clips, size=batch_size * length_groups)
    group = group[np.argsort(lengths[group], kind="stable")]
    part = step % length_groups
    return group[part * batch_size:(part + 1) * batch_size]


def train_batches(split: Split, *, seed: int, batch_size: int, device: torch.device, rank: int = 0,
                  world_size: int = 1, start_step: int = 0, length_groups: int = 4,
                  pad_multiple: int = 1) -> Iterator[dict]:
    if batch_size % world_size:
        raise ValueError(f"global batch {batch_size} is not divisible by {world_size} ranks")
    per_rank = batch_size // world_size
    lengths = split.index[:, 3]
    step = start_step
    while True:
        clips = train_clips(len(split), lengths, seed=seed, step=step, batch_size=batch_size,
                            length_groups=length_groups)[rank * per_rank:(rank + 1) * per_rank]
        yield to_batch(collate(split, clips, pad_multiple=pad_multiple), device)
        step += 1


def eval_batches(split: Split, *, batch_size: int, device: torch.device, pad_multiple: int = 1) -> list[dict]:
    """The whole split in fixed batches of similar lengths (longest first)."""
    order = np.argsort(-split.index[:, 3], kind="stable")
    return [to_batch(collate(split, order[i:i + batch_size], pad_multiple=pad_multiple), device)
            for i in range(0, len(order), batch_size)]
