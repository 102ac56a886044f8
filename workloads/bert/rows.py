"""Packed rows of `seq_len` tokens, read from the token shards `prepare` writes.

A training batch draws rows uniformly with replacement from all train shards, from the step's
generator (seeded by (seed, step)), so any step's batch can be made again; rank r of W takes
its slice of the global batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from workloads.gpt2.shards import ShardError, find_shards, read_shard


def _row_shards(folder: Path, split: str, seq_len: int) -> list[np.ndarray]:
    paths = find_shards(Path(folder), split)
    if not paths:
        raise ShardError(f"{folder} has no {split} shards")
    out = []
    for path in paths:
        tokens = read_shard(path)
        if len(tokens) % seq_len:
            raise ShardError(f"{path}: {len(tokens)} tokens is not a whole number of {seq_len}-token rows")
        out.append(tokens.reshape(-1, seq_len))
    return out


def read_rows(folder: Path, split: str, seq_len: int, *, limit: int | None = None) -> np.ndarray:
    """The first `limit` rows of a split (all when None), as int64 (rows, seq_len)."""
    rows = np.concatenate(_row_shards(folder, split, seq_len))
    return np.asarray(rows[:limit], dtype=np.int64)


class RowStream:
    def __init__(self, folder: Path, split: str, seq_len: int) -> None:
        self.shards = _row_shards(folder, split, seq_len)
        self.cum_rows = np.cumsum([len(s) for s in self.shards])

    def rows(self, rng: np.random.Generator, batch_size: int, *, rank: int = 0, world_size: int = 1) -> np.ndarray:
        """Rank `rank`'s slice of a global batch of random rows, int64 (batch_size / world_size, seq_len)."""
        if batch_size % world_size:
            raise ValueError(f"global batch {batch_size} is not divisible by {world_size} ranks")
        flat = rng.integers(0, self.cum_rows[-1], size=batch_size)
        per_rank = batch_size // world_size
        flat = flat[rank * per_rank:(rank + 1) * per_rank]
        shard = np.searchsorted(self.cum_rows, flat, side="right")
        local = flat - np.concatenate(([0], self.cum_rows))[shard]
        return np.stack([self.shards[s][i] for s, i in zip(shard, local)]).astype(np.int64)
