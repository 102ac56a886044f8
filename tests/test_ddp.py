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
pytestmark = pytest.mark.xdist_group("exclusive")  # 2 processes each: not beside other multi-process tests


ALGOPERF = Path(__file__).parent / "algoperf_submissions"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "algobench"]


def run(args: list[str], results: Path, data_dir: Path, launcher: list[str], submission: str = "adamw") -> Path:
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    res = subprocess.run([*launcher, "run", "--workload", "gpt2", "--submission", submission, "--device", "cpu",
                          "--seed", "1", "--batch-size", "8", "--data-dir", str(data_dir),
                          "--results-dir", str(results), *args],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    folders = list((results / "gpt2" / "smoke" / Path(submission).stem).iterdir())
    assert len(folders) == 1, folders  # under torchrun, rank 0 alone writes
    return folders[0]


def test_two_processes_match_one_with_the_same_global_batch(data_dir, tmp_path):
    args = ["--max-steps", "20", "--eval-every-steps", "10"]
    one = run(args, tmp_path / "one", data_dir, [sys.executable, "-m", "algobench"])
    two = run(args, tmp_path / "two", data_dir, TORCHRUN)
    ref, got = pd.read_parquet(one / "evals.parquet"), pd.read_parquet(two / "evals.parquet")
    assert list(got["step"]) == list(ref["step"]) == [10, 20]
    for column in ("val_loss", "test_loss"):  # (the test split: at the last eval only, NaN before)
        assert list(got[column]) == pytest.approx(list(ref[column]), rel=DDP_RTOL, nan_ok=True)
    assert ref["test_loss"].iloc[:-1].isna().all() and ref["test_loss"].notna().iloc[-1]
    assert ref["val_loss"].iloc[-1] < ref["val_loss"].iloc[0] - 0.3  # it learns
    train_ref, train_got = pd.read_parquet(one / "train.parquet"), pd.read_parquet(two / "train.parquet")
    assert list(train_got["train_loss"]) == pytest.approx(list(train_ref["train_loss"]), rel=DDP_RTOL)
    meta = (two / "metadata.json").read_text()
    assert '"batch_size": 8' in meta  # the global batch, not the 4 rows each rank takes


# Plain SGD, so that a gradient off by the number of processes would show (Adam would hide it).
ALGOPERF_SGD = """
import torch
import torch.distributed.nn as dist_nn
from algoperf import spec
from algoperf.pytorch_utils import pytorch_setup

USE_PYTORCH_DDP = pytorch_setup()[0]


def init_optimizer_state(workload, model_params, model_state, hyperparameters, rng):
    return {"optimizer": torch.optim.SGD(model_params.parameters(), lr=hyperparameters.learning_rate)}


def update_params(workload, current_param_container, current_params_types, model_state, hyperparameters, batch,
                  loss_type, optimizer_state, eval_results, global_step, rng):
    current_param_container.train()
    optimizer_state["optimizer"].zero_grad()
    logits, new_model_state = workload.model_fn(
        params=current_param_container, augmented_and_preprocessed_input_batch=batch, model_state=model_state,
        mode=spec.ForwardPassMode.TRAIN, rng=rng, update_batch_norm=True)
    loss_dict = workload.loss_fn(label_batch=batch["targets"], logits_batch=logits, mask_batch=batch.get("weights"))
    summed, n = loss_dict["summed"], loss_dict["n_valid_examples"]
    if USE_PYTORCH_DDP:
        summed, n = dist_nn.all_reduce(summed), dist_nn.all_reduce(n)
    (summed / n).backward()
    optimizer_state["optimizer"].step()
    return optimizer_state, current_param_container, new_model_state


def get_batch_size(workload_name):
    raise ValueError(workload_name)


def data_selection(workload, input_queue, optimizer_state, current_param_container, model_state, hyperparameters,
                   global_step, rng):
    return next(input_queue)
"""


@pytest.mark.parametrize("name", ["baseline_style", "sgd"])
def test_an_algoperf_submission_under_two_processes_matches_one(name, data_dir, tmp_path):
    """AlgoPerf's submissions all-reduce the summed loss and the example count themselves and leave
    gradient averaging to the DDP-wrapped model: through the adapter, 2 gloo processes on the same
    global batch give 1 process's eval history."""
    if name == "sgd":
        sub = tmp_path / "algoperf_sgd.py"
        sub.write_text(ALGOPERF_SGD)
        hparams = tmp_path / "hparams.json"
        hparams.write_text('{"learning_rate": {"feasible_points": [0.5]}}')
    else:
        sub, hparams = ALGOPERF / "baseline_style.py", ALGOPERF / "tuning_search_space.json"
    args = ["--max-steps", "20", "--eval-every-steps", "10", "--hparams", str(hparams)]
    one = run(args, tmp_path / "one", data_dir, [sys.executable, "-m", "algobench"], submission=str(sub))
    two = run(args, tmp_path / "two", data_dir, TORCHRUN, submission=str(sub))
    ref, got = pd.read_parquet(one / "evals.parquet"), pd.read_parquet(two / "evals.parquet")
    assert list(got["step"]) == list(ref["step"]) == [10, 20]
    for column in ("val_loss", "test_loss"):  # (the test split: at the last eval only, NaN before)
        assert list(got[column]) == pytest.approx(list(ref[column]), rel=DDP_RTOL, nan_ok=True)
    assert ref["test_loss"].iloc[:-1].isna().all() and ref["test_loss"].notna().iloc[-1]
    assert ref["val_loss"].iloc[-1] < ref["val_loss"].iloc[0] - 0.05  # it learns
