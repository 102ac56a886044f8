"""Batches for the ViT workload: which examples each step sees, and how they reach the device.

Every step's examples depend only on (seed, step): epoch e visits a permutation drawn from
(seed, e), in batches of the global batch size (the remainder of an epoch is dropped), and rank
r of W takes its slice of each batch. Images travel as uint8 (N, C, H, W); normalisation happens
on the device, inside the forward pass.

- smoke: Fashion-MNIST held in memory (on the device) from the prepared idx files.
- small/full: image shards decoded and cropped by DataLoader worker processes.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from workloads.vit.idx import read_idx
from workloads.vit.images import ImageShards, eval_crop, train_crop

Batch = dict[str, torch.Tensor]


@functools.lru_cache(maxsize=4)
def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def step_indices(n: int, *, seed: int, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
    """The example indices rank `rank` trains on at `step`."""
    if batch_size % world_size:
        raise ValueError(f"global batch {batch_size} is not divisible by {world_size} ranks")
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise ValueError(f"batch size {batch_size} exceeds the {n} training examples")
    epoch, i = divmod(step, per_epoch)
    rows = epoch_permutation(n, seed, epoch)[i * batch_size:(i + 1) * batch_size]
    per_rank = batch_size // world_size
    return rows[rank * per_rank:(rank + 1) * per_rank]


# --- smoke: Fashion-MNIST in memory ----------------------------------------------------------

def idx_split(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, 28, 28) uint8 and labels (N,) int64 of a prepared split."""
    images = read_idx(Path(folder) / f"{split}-images-idx3-ubyte")
    labels = read_idx(Path(folder) / f"{split}-labels-idx1-ubyte")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def memory_batches(images: torch.Tensor, labels: torch.Tensor, *, seed: int, batch_size: int, rank: int,
                   world_size: int, start_step: int) -> Iterator[Batch]:
    step = start_step
    while True:
        rows = torch.from_numpy(step_indices(len(labels), seed=seed, step=step, batch_size=batch_size, rank=rank,
                                             world_size=world_size)).to(images.device)
        yield {"inputs": images[rows], "targets": labels[rows]}
        step += 1


# --- small / full: image shards through loader workers ---------------------------------------

class ShardSamples(torch.utils.data.Dataset):
    """Item (index, step, slot): the decoded, cropped image and its label. Training crops draw
    from rng (seed, step, slot), so they are the same whichever worker makes them."""

    def __init__(self, folder: Path, split: str, *, image_size: int, train: bool, seed: int = 0) -> None:
        self.shards = ImageShards(folder, split)
        self.image_size, self.train, self.seed = image_size, train, seed

    def __len__(self) -> int:
        return len(self.shards)

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[torch.Tensor, int]:
        index, step, slot = key
        image = self.shards.image(index)
        if self.train:
            pixels = train_crop(image, self.image_size, np.random.default_rng([self.seed, step, slot]))
        else:
            pixels = eval_crop(image, self.image_size)
        return torch.from_numpy(pixels.copy()).permute(2, 0, 1), int(self.shards.labels[index])


class TrainSteps(torch.utils.data.Sampler):
    """One list of (index, step, slot) keys per step, from `start_step` on, forever."""

    def __init__(self, n: int, *, seed: int, batch_size: int, rank: int, world_size: int, start_step: int) -> None:
        self.n, self.seed, self.batch_size = n, seed, batch_size
        self.rank, self.world_size, self.start_step = rank, world_size, start_step

    def __iter__(self):
        step = self.start_step
        while True:
            rows = step_indices(self.n, seed=self.seed, step=step, batch_size=self.batch_size, rank=self.rank,
                                world_size=self.world_size)
            yield [(int(i), step, slot) for slot, i in enumerate(rows)]
            step += 1


def _loader(dataset: ShardSamples, batch_sampler, *, workers: int, device: torch.device) -> torch.utils.data.DataLoader:
    # Forking a process that runs JAX (a JAX trial takes its batches from here) can deadlock:
    # its workers then start from a fork server instead.
    context = "forkserver" if workers and "jax" in sys.modules else None
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=batch_sampler, num_workers=workers, pin_memory=device.type == "cuda",
        persistent_workers=False, prefetch_factor=4 if workers else None, multiprocessing_context=context)


def shard_train_batches(folder: Path, *, image_size: int, workers: int, device: torch.device, seed: int,
                        batch_size: int, rank: int, world_size: int, start_step: int) -> Iterator[Batch]:
    data = ShardSamples(folder, "train", image_size=image_size, train=True, seed=seed)
    steps = TrainSteps(len(data), seed=seed, batch_size=batch_size, rank=rank, world_size=world_size,
                       start_step=start_step)
    for images, labels in _loader(data, steps, workers=workers, device=device):
        yield {"inputs": images.to(device, non_blocking=True), "targets": labels.to(device, non_blocking=True)}


def shard_eval_batches(folder: Path, split: str, *, image_size: int, workers: int, device: torch.device,
                       batch_size: int, limit: int | None) -> Iterator[Batch]:
    """The first `limit` images of `split` (all when None), in order, center-cropped."""
    data = ShardSamples(folder, split, image_size=image_size, train=False)
    n = len(data) if limit is None else min(limit, len(data))
    chunks = [[(i, 0, 0) for i in range(start, min(start + batch_size, n))] for start in range(0, n, batch_size)]
    for images, labels in _loader(data, chunks, workers=workers, device=device):
        yield {"inputs": images.to(device, non_blocking=True), "targets": labels.to(device, non_blocking=True)}
