"""Data parallelism on CPU: torchrun, 2 processes, gloo; the same global batch as one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

# Two processes average the gradients of two half batches: the same update as one process on the
# whole batch up to float32 summation order. Measured: relative differences < 1e-7 in val and test
# loss after 40 AdamW steps (gpt2 smoke, batch 8); allowed: 1e-5.
DDP_RTOL = 1e-5


def run(args: list[str], results: Path, data_dir: Path, launcher: list[str]) -> Path:
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    res = subprocess.run([*launcher, "run", "--workload", "gpt2", "--submission", "adamw", "--device", "cpu",
                          "--seed", "1", "--batch-size", "8", "--data-dir", str(data_dir),
                          "--results-dir", str(results), *args],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    folders = list((results / "gpt2" / "smoke" / "adamw").iterdir())
    assert len(folders) == 1, folders  # under torchrun, rank 0 alone writes
    return folders[0]


def test_two_processes_match_one_with_the_same_global_batch(data_dir, tmp_path):
    args = ["--max-steps", "20", "--eval-every-steps", "10"]
    one = run(args, tmp_path / "one", data_dir, [sys.executable, "-m", "algobench"])
    two = run(args, tmp_path / "two", data_dir, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                 "--nproc-per-node", "2", "-m", "algobench"])
    ref, got = pd.read_parquet(one / "evals.parquet"), pd.read_parquet(two / "evals.parquet")
    assert list(got["step"]) == list(ref["step"]) == [10, 20]
    for column in ("val_loss", "test_loss"):
        assert list(got[column]) == pytest.approx(list(ref[column]), rel=DDP_RTOL)
    assert ref["val_loss"].iloc[-1] < ref["val_loss"].iloc[0] - 0.3  # it learns
    train_ref, train_got = pd.read_parquet(one / "train.parquet"), pd.read_parquet(two / "train.parquet")
    assert list(train_got["train_loss"]) == pytest.approx(list(train_ref["train_loss"]), rel=DDP_RTOL)
    meta = (two / "metadata.json").read_text()
    assert '"batch_size": 8' in meta  # the global batch, not the 4 rows each rank takes
