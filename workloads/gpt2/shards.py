"""Token shards in the llm.c / modded-nanogpt format, and the batches drawn from them.

A shard is a header of 256 little-endian int32 (magic 20240520, version 1, token count, zeros)
followed by the tokens as uint16. FineWeb shards that users already have work as they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from algobench.errors import UserError
from algobench.files import atomic_write

MAGIC, VERSION, HEADER_INTS = 20240520, 1, 256


class ShardError(UserError):
    """A token shard that is missing, truncated or not a shard: bad input, one line."""


def write_shard(path: Path, tokens: np.ndarray) -> None:
    """Write `tokens` (< 65,536) as one shard, atomically."""
    tokens = np.asarray(tokens)
    if tokens.size and int(tokens.max()) >= 2**16:
        raise ShardError(f"token id {int(tokens.max())} does not fit in uint16")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:3] = (MAGIC, VERSION, tokens.size)
    atomic_write(path, header.tobytes() + tokens.astype("<u2").tobytes())


def read_shard(path: Path) -> np.ndarray:
    """The shard's tokens as a read-only uint16 memory map."""
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if header.size < HEADER_INTS or header[0] != MAGIC:
        raise ShardError(f"{path} is not a token shard (bad magic number)")
    if header[1] != VERSION:
        raise ShardError(f"{path}: unsupported shard version {header[1]}")
    n = int(header[2])
    expected = HEADER_INTS * 4 + 2 * n
    if path.stat().st_size != expected:
        raise ShardError(f"{path}: header says {n} tokens, file size {path.stat().st_size} != {expected}")
    return np.memmap(path, dtype="<u2", mode="r", offset=HEADER_INTS * 4, shape=(n,))


def find_shards(folder: Path, split: str) -> list[Path]:
    """`*train_*.bin`, `*val_*.bin`, `*test_*.bin`: our names and modded-nanogpt's alike."""
    return sorted(folder.glob(f"*{split}_*.bin"))


class TokenStream:
    """Random windows of `seq_len + 1` tokens from a list of shards, one batch per step.

    Batch `step` depends only on (seed, step), so a trial restarted at any step sees the same
    data, and rank `r` of `world_size` takes rows [r*B/W, (r+1)*B/W) of the same global batch.
    """

    def __init__(self, shards: list[Path], seq_len: int) -> None:
        self.tokens = [read_shard(p) for p in shards]
        self.seq_len = seq_len
        starts = np.array([max(len(t) - seq_len - 1, 0) for t in self.tokens], dtype=np.int64)
        if starts.sum() == 0:
            raise ShardError(f"shards {[str(p) for p in shards]} hold no window of {seq_len + 1} tokens")
        self.cum_starts = np.cumsum(starts)

    def batch(self, *, seed: int, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
        if batch_size % world_size:
            raise ValueError(f"global batch {batch_size} is not divisible by {world_size} ranks")
        rng = np.random.default_rng([seed, step])
        flat = rng.integers(0, self.cum_starts[-1], size=batch_size)
        per_rank = batch_size // world_size
        flat = flat[rank * per_rank:(rank + 1) * per_rank]
        shard = np.searchsorted(self.cum_starts, flat, side="right")
        offset = flat - np.concatenate(([0], self.cum_starts))[shard]
        return np.stack([self.tokens[s][o:o + self.seq_len + 1] for s, o in zip(shard, offset)]).astype(np.int64)

    def batches(self, *, seed: int, batch_size: int, device: torch.device, rank: int = 0, world_size: int = 1,
                start_step: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        step = start_step
        pin = device.type == "cuda"
        while True:
            rows = torch.from_numpy(self.batch(seed=seed, step=step, batch_size=batch_size, rank=rank,
                                               world_size=world_size))
            if pin:
                rows = rows.pin_memory()
            rows = rows.to(device, non_blocking=True)
            yield {"inputs": rows[:, :-1], "targets": rows[:, 1:]}
            step += 1


def eval_windows(tokens: np.ndarray, *, seq_len: int, n_tokens: int, offset: int = 0) -> torch.Tensor:
    """Fixed consecutive windows (rows of seq_len + 1 tokens, overlapping by one) for evaluation."""
    n_seq = n_tokens // seq_len
    need = offset + n_seq * seq_len + 1
    if len(tokens) < need:
        raise ShardError(f"evaluation needs {need} tokens, the split holds {len(tokens)}")
    chunk = np.asarray(tokens[offset:need], dtype=np.int64)
    idx = np.arange(n_seq)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
    return torch.from_numpy(chunk[idx])
