"""Suspend and resume on CPU: the uninterrupted eval history, an exact clock, safe loading,
a clean restart from a bad checkpoint, and every submission's state through a checkpoint."""

from __future__ import annotations

import inspect
import json
import signal
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import algobench.clock
import algobench.runner
from algobench import checkpoint as ckpt
from algobench import submission as submission_lib
from algobench.events import Evaluated, Started
from algobench.layout import CHECKPOINT
from algobench.runner import _rng
from algobench.trial import TrialSuspended, execute
from algobench.frameworks.torch import TorchBackend
from workloads import WORKLOADS
from tests.helpers import config


def trial(data_dir: Path, results_dir: Path, **options):
    options = {"seed": 1, "max_steps": 30, "eval_period_steps": 10, "batch_size": 4, "device": "cpu"} | options
    return config(data_dir, options.pop("submission", "adan"), **options).model_copy(
        update={"results_dir": results_dir})


def suspend_at(step: int):
    """A suspension request that the runner sees between steps `step` and `step + 1`."""
    calls = {"n": 0}

    def requested() -> bool:
        calls["n"] += 1
        return calls["n"] == step + 1

    return requested


def history(folder: Path, file: str = "evals.parquet", columns=("step", "val_loss", "test_loss")) -> list:
    """The rows as tuples; a split not evaluated at a step (the test split before the end) reads None."""
    df = pd.read_parquet(folder / file)[list(columns)]
    return list(df.astype(object).where(df.notna(), None).itertuples(index=False, name=None))


def suspended(cfg, folder: Path, step: int) -> TrialSuspended:
    with pytest.raises(TrialSuspended) as info:
        execute(cfg, trial_dir=folder, resumable=True, suspend=suspend_at(step))
    return info.value


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory) -> Path:
    """The uninterrupted trial."""
    folder = tmp_path_factory.mktemp("reference") / "trial"
    execute(trial(data_dir, folder.parent), trial_dir=folder)
    return folder


@pytest.mark.xdist_group("checkpoint_reference")  # the uninterrupted trial is run once, not once per xdist worker
def test_resumed_trial_ends_with_the_uninterrupted_eval_history(data_dir, tmp_path, reference, monkeypatch):
    folder = tmp_path / "trial"
    cfg = trial(data_dir, tmp_path)
    suspended(cfg, folder, 5)
    first_id = json.loads((folder / "metadata.json").read_text())["trial_id"]
    stop = suspended(cfg, folder, 10)  # the second attempt starts at step 5 and stops at 15
    assert stop.event.step == 15 and stop.event.checkpoint == folder / CHECKPOINT
    assert not (folder / "summary.json").exists()  # unfinished until it is resumed

    saved = torch.load(folder / CHECKPOINT, weights_only=True)  # tensors and plain data only
    assert saved["progress"]["step"] == saved["progress"]["batches_drawn"] == 15
    assert saved["progress"]["submission_time_s"] == stop.event.submission_time_s
    assert [row["step"] for row in saved["progress"]["evals"]] == [10]
    assert set(saved["rng"]) == {"torch", "cuda", "numpy", "python"}

    # 1,000 s pass between the attempts (queueing, restarting): none of them may reach the clock
    real = time.perf_counter
    monkeypatch.setattr(algobench.clock.time, "perf_counter", lambda: real() + 1000.0)
    events = []
    summary, _ = execute(cfg, [events.append], trial_dir=folder, resumable=True, suspend=lambda: False)
    started = events[0]
    assert isinstance(started, Started) and started.resume.step == 15 and started.resume.requeues == 2
    assert started.resume.submission_time_s == stop.event.submission_time_s
    evals = [e for e in events if isinstance(e, Evaluated)]
    assert [e.step for e in evals] == [20, 30]
    assert stop.event.submission_time_s < evals[0].submission_time_s < stop.event.submission_time_s + 100
    assert summary["wall_time_s"] < 1000 and summary["submission_time_s"] < 1000

    assert history(folder) == history(reference)  # same steps, same values, to the bit
    assert history(folder, "train.parquet", ("step", "train_loss")) == \
        history(reference, "train.parquet", ("step", "train_loss"))
    assert summary["requeues"] == 2 and summary["steps"] == 30 and summary["trial_id"] == first_id
    assert not (folder / CHECKPOINT).exists()  # a finished trial keeps no checkpoint


@pytest.mark.xdist_group("checkpoint_reference")
def test_corrupt_checkpoint_is_reported_and_the_trial_starts_over(data_dir, tmp_path, reference):
    folder = tmp_path / "trial"
    cfg = trial(data_dir, tmp_path)
    suspended(cfg, folder, 15)
    path = folder / CHECKPOINT
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a damaged disk, a bad copy
    events = []
    summary, _ = execute(cfg, [events.append], trial_dir=folder, resumable=True, suspend=lambda: False)
    reason = events[0].checkpoint_discarded
    assert events[0].resume is None and reason.startswith("unreadable (")
    assert json.loads((folder / "metadata.json").read_text())["checkpoint_discarded"] == reason
    assert (folder / "checkpoint.pt.corrupt").exists() and not path.exists()
    assert summary["requeues"] == 0 and history(folder) == history(reference)


class SeenStart(Exception):
    pass


@pytest.mark.parametrize("damage", ["garbage", "other_config"])
def test_foreign_checkpoint_is_set_aside_with_the_reason(data_dir, tmp_path, damage):
    folder = tmp_path / "trial"
    cfg = trial(data_dir, tmp_path, max_steps=2, eval_period_steps=2)
    suspended(cfg, folder, 1)
    if damage == "garbage":
        (folder / CHECKPOINT).write_bytes(b"not a checkpoint at all")
    else:
        cfg = cfg.model_copy(update={"hparams": {"learning_rate": 5e-3}})
    seen = []

    def stop_at_start(event):
        seen.append(event)
        raise SeenStart

    with pytest.raises(SeenStart):
        execute(cfg, [stop_at_start], trial_dir=folder, resumable=True, suspend=lambda: False)
    reason = seen[0].checkpoint_discarded
    assert ("another config" in reason) if damage == "other_config" else reason.startswith("unreadable (")
    assert (folder / "checkpoint.pt.corrupt").exists() and not (folder / CHECKPOINT).exists()


def test_usr2_suspends_the_trial_at_the_next_step_boundary(data_dir, tmp_path):
    """SLURM's warning signal as a job receives it: the step in progress ends, then the trial
    saves its state, and the signal is handed on to the handler before (submitit's requeue)."""
    path = tmp_path / "signal_at_7.py"
    path.write_text(textwrap.dedent("""
        import os, signal
        from submissions.adamw import HPARAMS, PAPER, SEARCH_SPACE, make_optimizer
        from submissions.adamw import lr_schedule as adamw_schedule
        def lr_schedule(*, step, step_hint, hparams):
            if step == 7:
                os.kill(os.getpid(), signal.SIGUSR2)
            return adamw_schedule(step=step, step_hint=step_hint, hparams=hparams)
    """))
    handed_on = []
    before = signal.signal(signal.SIGUSR2, lambda signum, frame: handed_on.append(signum))
    try:
        flag = ckpt.SuspendOnSignal(signal.SIGUSR2)
        with pytest.raises(TrialSuspended) as info:
            execute(trial(data_dir, tmp_path, submission=str(path), max_steps=20), trial_dir=tmp_path / "trial",
                    resumable=True, suspend=flag)
        assert info.value.event.step == 8 and handed_on == []
        flag.forward()
        assert handed_on == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, before)
    saved = torch.load(tmp_path / "trial" / CHECKPOINT, weights_only=True)
    assert saved["progress"]["step"] == 8


@pytest.mark.parametrize("name", submission_lib.builtin_names())
def test_every_submission_state_goes_through_a_checkpoint(name, data_dir, tmp_path):
    """Two steps, checkpoint, restore into a fresh model and optimizer: the third step is the same."""
    spec = WORKLOADS.get("gpt2")
    wl = spec.build_torch(preset=spec.presets["smoke"], size="smoke", data_dir=data_dir,
                          backend=TorchBackend.choose("cpu"))
    sub = submission_lib.load(name)
    hp = submission_lib.make_hparams(sub.hparams())
    batches = wl.train_batches(seed=0, batch_size=2)
    batches = [next(batches) for _ in range(3)]

    def fresh():
        torch.manual_seed(0)
        model = wl.init_model(0)
        return model, sub.init_optimizer_state(workload=wl, model_params=model, model_state=None,
                                               hyperparameters=hp, rng=_rng(0, 0))

    def step(model, state, k):
        extra = {"train_state": {"accumulated_submission_time": 0.0, "global_step": k, "last_eval_time": 0}} \
            if "train_state" in inspect.signature(sub.update_params).parameters else {}
        out = sub.update_params(workload=wl, current_param_container=model, current_params_types=wl.param_types,
                                model_state=None, hyperparameters=hp, batch=batches[k], loss_type="cross_entropy",
                                optimizer_state=state, eval_results=[], global_step=k, rng=_rng(0, k), **extra)
        return out[0]

    model_a, state_a = fresh()
    for k in range(2):
        state_a = step(model_a, state_a, k)
    path = tmp_path / CHECKPOINT
    ckpt.save(path, identity=name, progress={"step": 2}, model=model_a, optimizer_state=state_a,
              model_state=None)
    model_b, state_b = fresh()
    loaded = ckpt.load(path, identity=name)
    assert isinstance(loaded, ckpt.Checkpoint), loaded
    state_b, _ = ckpt.restore(loaded, model=model_b, optimizer_state=state_b, model_state=None)
    step(model_a, state_a, 2)
    step(model_b, state_b, 2)
    for (n, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(a, b), f"{name}: {n} differs after restoring the checkpoint"


def test_optimizer_state_that_cannot_be_saved_is_named():
    with pytest.raises(ckpt.CheckpointError, match=r"optimizer_state\['hook'\] holds a function"):
        ckpt.to_saveable({"hook": lambda: None}, "optimizer_state")


def test_numpy_arrays_keep_shape_and_dtype_through_a_checkpoint():
    state = {"scalar": np.array(3.5, dtype=np.float32), "counts": np.arange(6, dtype=np.int64).reshape(2, 3),
             "flag": np.bool_(True)}
    back = ckpt.restore_into(None, ckpt.to_saveable(state, "optimizer_state"))
    assert back["scalar"].shape == () and back["scalar"].dtype == np.float32 and back["scalar"] == 3.5
    assert back["counts"].shape == (2, 3) and np.array_equal(back["counts"], state["counts"])
    assert back["flag"] is True
