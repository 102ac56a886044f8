"""Run one trial and yield what happens, under AlgoPerf's timing rules.

The clock starts after data setup, model init and optimizer init. Submission time is the sum
of the steps (data selection + update, compilation included); evaluation and logging are off
the clock. Evaluation happens every `eval_period_s` of submission time (or every
`eval_period_steps` steps) and at the end. A trial stops at the target, at the budget, at
`max_steps`, when the submission raises or diverges, or when it raises `TrainingComplete`.

A trial may also be suspended between two steps (SLURM preemption or time limit): its state goes
to a checkpoint (algobench/checkpoint.py) and a later run continues from it with the clock where
it stopped. Under DDP (algobench/distributed.py) every rank runs this loop on its slice of the
global batch. What depends on the framework (torch or jax: model init, parameter checks, device
sync, checkpoint state) goes through `algobench.frameworks`; the submission's update step is the
framework's own code.
"""

from __future__ import annotations

import inspect
import math
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from algobench import checkpoint as ckpt
from algobench import distributed
from algobench import submission as submission_lib
from algobench.clock import Stopwatch
from algobench.distributed import SINGLE, Dist
from algobench.errors import UserError
from algobench.frameworks import TorchFramework, framework_for
from algobench.specs import Preset, TrialConfig
from algobench.workload import WORKLOADS, TorchBackend, TorchWorkload, WorkloadSpec


@dataclass(frozen=True)
class Resume:
    """A trial continuing from its checkpoint, and what it had done before."""

    step: int
    requeues: int  # times the trial has been resumed, this one included
    submission_time_s: float
    evals: list[dict[str, float]]  # rows of evals.parquet so far
    train: list[dict[str, float]]  # rows of train.parquet so far


@dataclass(frozen=True)
class Started:
    config: TrialConfig
    preset: Preset
    submission: submission_lib.Submission
    hparams: dict[str, Any]
    backend: dict[str, Any]
    batch_size: int
    n_params: int
    resume: Resume | None = None
    checkpoint_discarded: str | None = None  # why a checkpoint found could not be used


@dataclass(frozen=True)
class TrainLog:
    step: int
    submission_time_s: float
    loss: float

    def row(self) -> dict[str, float]:
        return {"step": self.step, "submission_time_s": self.submission_time_s, "train_loss": self.loss}


@dataclass(frozen=True)
class Evaluated:
    step: int
    submission_time_s: float
    eval_time_s: float  # accumulated, this eval included
    wall_time_s: float
    metrics: dict[str, float]

    def row(self) -> dict[str, float]:
        return {"step": self.step, "submission_time_s": self.submission_time_s,
                "eval_time_s": self.eval_time_s, "wall_time_s": self.wall_time_s, **self.metrics}


@dataclass(frozen=True)
class Ended:
    status: str  # reached | not_reached | failed
    reason: str
    steps: int
    submission_time_s: float
    eval_time_s: float
    wall_time_s: float
    time_to_target_s: float | None = None
    steps_to_target: int | None = None
    final_metrics: dict[str, float] = field(default_factory=dict)
    traceback: str | None = None
    requeues: int = 0
    compile_time_s: float | None = None  # included in submission_time_s; None: not measured


@dataclass(frozen=True)
class Suspended:
    """The trial stopped between two steps with its state in `checkpoint` (None: it could not be
    saved, see `error`); running it again with the same checkpoint path continues it."""

    step: int
    submission_time_s: float
    checkpoint: Path | None
    error: str | None = None


Event = Started | TrainLog | Evaluated | Ended | Suspended
ALGOPERF_SPLIT = {"val": "validation"}  # eval_results keys read 'validation/loss', as in AlgoPerf


def ensure_data(config: TrialConfig) -> WorkloadSpec:
    """Find the workload and make sure its data is there (prepared here when that takes seconds)."""
    spec = WORKLOADS.get(config.workload)
    if config.size not in spec.presets:
        raise UserError(f"workload {spec.name} has no size '{config.size}'; sizes: {', '.join(spec.presets)}")
    if not spec.data.is_ready(config.size, config.data_dir):
        if config.size not in spec.data.auto_prepare_sizes:
            raise UserError(
                f"data for {spec.name} ({config.size}) is not prepared in {config.data_dir}; run: "
                f"algobench data prepare {spec.name} --size {config.size} --data-dir {config.data_dir}")
        spec.data.prepare(config.size, config.data_dir)
    return spec


def prepare_workload(config: TrialConfig, backend: TorchBackend) -> TorchWorkload:
    """The workload with its data ready, built for torch."""
    return TorchFramework(backend).prepare(config, ensure_data(config))


def run_trial(config: TrialConfig, submission: submission_lib.Submission | None = None, *,
              checkpoint: Path | None = None, suspend: Callable[[], bool] | None = None,
              dist: Dist = SINGLE) -> Iterator[Event]:
    """Run one trial, yielding its events.

    With `checkpoint` (a file path), the trial resumes from that file when it exists, and when
    `suspend()` turns true (checked between steps) it saves its full state there, yields
    `Suspended` and stops. `dist` is this process's rank in data-parallel training."""
    sub = submission or submission_lib.load(config.submission, framework=config.framework)
    if (sub.form == "optax") != (config.framework == "jax"):
        raise UserError(f"submission {sub.name} was loaded in its {sub.form} form for a {config.framework} trial")
    hparams_dict = sub.hparams(config.hparams)
    hparams = submission_lib.make_hparams(hparams_dict)
    opts = config.options
    framework = framework_for(config, dist)

    # Setup, off the clock: data, model, optimizer, and the checkpoint to resume from.
    workload = framework.prepare(config, ensure_data(config))
    preset = workload.preset
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    model = framework.init_model(workload, config.seed, dist)
    model_state = None
    # --batch-size, else the submission's choice (None: no opinion), else the preset's
    batch_size = (opts.batch_size or (sub.get_batch_size(config.workload) if sub.get_batch_size else None)
                  or preset.batch_size)
    rng = _rng(config.seed, 0)
    optimizer_state = sub.init_optimizer_state(
        workload=workload, model_params=model, model_state=model_state, hyperparameters=hparams, rng=rng)
    pass_train_state = "train_state" in inspect.signature(sub.update_params).parameters
    identity = ckpt.identity(config, sub.sha256)
    found, p, discarded = ckpt.find(checkpoint, identity=identity, dist=dist,
                                    fresh=ckpt.Progress(next_eval_s=preset.eval_period_s))
    batches = ckpt.CountingIterator(workload.train_batches(
        seed=config.seed, batch_size=batch_size, rank=dist.rank, world_size=dist.world_size,
        start_step=p.batches_drawn), drawn=p.batches_drawn)
    resume = None
    if found is not None:  # after the batches: restoring sets the RNGs as they were at suspension
        model, optimizer_state, model_state = framework.restore(found, model=model, optimizer_state=optimizer_state,
                                                                model_state=model_state)
        resume = Resume(step=p.step, requeues=p.requeues, submission_time_s=p.submission_time_s,
                        evals=list(p.evals), train=list(p.train))

    yield Started(config=config, preset=preset, submission=sub, hparams=hparams_dict,
                  backend=framework.describe(), batch_size=batch_size,
                  n_params=framework.n_params(model), resume=resume,
                  checkpoint_discarded=discarded)

    clock = Stopwatch(sync=lambda: framework.sync(model))  # (the model of the latest step)
    clock.restore(p.submission_time_s)
    wall_start = time.perf_counter() - p.wall_time_s  # queueing and restarts are not counted
    can_suspend = checkpoint is not None and suspend is not None
    suspend_agreed = False  # DDP: decided by all ranks at the loss printouts
    loss = None
    stop_reason = None
    failure: tuple[str, str | None] | None = None  # (reason, traceback)
    end: Ended | None = None

    def ended(status: str, reason: str, **extra) -> Ended:
        return Ended(status=status, reason=reason, steps=p.step, submission_time_s=clock.elapsed_s,
                     eval_time_s=p.eval_time_s, wall_time_s=time.perf_counter() - wall_start,
                     final_metrics=p.last_metrics, requeues=p.requeues,
                     compile_time_s=framework.compile_time_s(), **extra)

    clock.resume()
    while True:
        # --- suspension (preemption, time limit) between two steps: save everything, stop ------
        if can_suspend and (suspend_agreed if dist.active else suspend()):
            clock.pause()
            p.submission_time_s, p.wall_time_s = clock.elapsed_s, time.perf_counter() - wall_start
            p.batches_drawn = batches.drawn
            yield _suspend(framework, checkpoint, identity, p, model, optimizer_state, model_state, dist)
            return

        # --- one step, on the clock -------------------------------------------------------
        try:
            step_rng = _rng(config.seed, p.step)
            batch = sub.data_selection(
                workload=workload, input_queue=batches, optimizer_state=optimizer_state,
                current_param_container=model, model_state=model_state, hyperparameters=hparams,
                global_step=p.step, rng=step_rng)
            kwargs = dict(
                workload=workload, current_param_container=model, current_params_types=workload.param_types,
                model_state=model_state, hyperparameters=hparams, batch=batch, loss_type="cross_entropy",
                optimizer_state=optimizer_state, eval_results=p.eval_results, global_step=p.step, rng=step_rng)
            if pass_train_state:
                kwargs["train_state"] = MappingProxyType({
                    "accumulated_submission_time": clock.elapsed_s, "global_step": p.step,
                    "last_eval_time": p.eval_results[-1][0] if p.eval_results else 0})
            out = sub.update_params(**kwargs)
            optimizer_state, model, model_state = out[:3]
            loss = out[3] if len(out) > 3 else None
            p.step += 1
        except submission_lib.TrainingComplete:
            p.step += 1
            stop_reason = "training complete (submission)"
        except Exception as err:  # the submission failed, not the harness
            clock.pause()
            failure = (f"exception: {type(err).__name__}: {err}", traceback.format_exc())
            break

        if opts.max_steps is not None and p.step >= opts.max_steps:
            stop_reason = stop_reason or "max steps"

        # --- loss printout every log_every_steps: the one host sync between evals ---------
        elapsed_s = None if dist.active else clock.elapsed_s  # DDP: agreed at the printouts only
        if p.step % preset.log_every_steps == 0 and (loss is not None or dist.active):
            clock.pause()
            if dist.active:
                loss_value, elapsed_s, suspend_agreed = distributed.agree(
                    dist, loss=loss, elapsed_s=clock.elapsed_s, suspend=bool(suspend and suspend()),
                    device=framework.backend.device)
            else:
                loss_value = float(loss)
            if loss_value is not None:
                logged = TrainLog(step=p.step, submission_time_s=clock.elapsed_s, loss=loss_value)
                p.train.append(logged.row())
                yield logged
                if not math.isfinite(loss_value):
                    failure = (f"diverged: non-finite training loss at step {p.step}", None)
                    break
            clock.resume()
        if elapsed_s is not None and elapsed_s >= preset.budget_s:
            stop_reason = stop_reason or "budget exhausted"
        if preset.eval_period_steps:
            due = p.step % preset.eval_period_steps == 0
        else:
            due = elapsed_s is not None and elapsed_s >= p.next_eval_s
        if not (due or stop_reason):
            continue

        # --- evaluation, off the clock (prepare_for_eval is on it, as in AlgoPerf) ---------
        try:
            if sub.prepare_for_eval is not None:
                optimizer_state, model, model_state = sub.prepare_for_eval(
                    workload=workload, current_param_container=model, current_params_types=workload.param_types,
                    model_state=model_state, hyperparameters=hparams, loss_type="cross_entropy",
                    optimizer_state=optimizer_state, eval_results=p.eval_results, global_step=p.step,
                    rng=_rng(config.seed, p.step))[:3]
        except Exception as err:
            clock.pause()
            failure = (f"exception: {type(err).__name__}: {err}", traceback.format_exc())
            break
        clock.pause()
        eval_start = time.perf_counter()
        if not framework.params_finite(model):
            failure = (f"diverged: non-finite parameters at step {p.step}", None)
            break
        by_split = {split: workload.evaluate(model, split) for split in workload.eval_splits}
        p.eval_time_s += time.perf_counter() - eval_start
        p.last_metrics = {f"{split}_{k}": v for split, ms in by_split.items() for k, v in ms.items()}
        p.eval_results.append((p.step, {f"{ALGOPERF_SPLIT.get(split, split)}/{k}": v
                                        for split, ms in by_split.items() for k, v in ms.items()}))
        evaluated = Evaluated(step=p.step, submission_time_s=clock.elapsed_s, eval_time_s=p.eval_time_s,
                              wall_time_s=time.perf_counter() - wall_start, metrics=p.last_metrics)
        p.evals.append(evaluated.row())
        yield evaluated
        if not all(math.isfinite(v) for v in p.last_metrics.values()):
            failure = (f"diverged: non-finite eval metric at step {p.step}", None)
            break
        if preset.target.met(p.last_metrics):
            end = ended("reached", "target reached", time_to_target_s=clock.elapsed_s, steps_to_target=p.step)
            break
        if stop_reason:
            end = ended("not_reached", stop_reason)
            break
        # DDP: from the agreed time, so that every rank expects the next eval at the same time
        p.next_eval_s = (elapsed_s if dist.active and elapsed_s is not None else clock.elapsed_s) + preset.eval_period_s
        clock.resume()

    if end is None:
        reason, tb = failure
        end = ended("failed", reason, traceback=tb)
    yield end
    if checkpoint is not None and dist.is_main:  # the trial is over: its checkpoint is not needed
        checkpoint.unlink(missing_ok=True)


def _suspend(framework, path: Path, identity: str, progress: ckpt.Progress, model, optimizer_state,
             model_state, dist: Dist) -> Suspended:
    """Rank 0 writes the checkpoint; every rank waits for it before stopping."""
    error = None
    if dist.is_main:
        try:
            framework.save(path, identity=identity, progress=progress, model=model,
                           optimizer_state=optimizer_state, model_state=model_state)
        except ckpt.CheckpointError as err:  # the trial will start over after the requeue
            error = str(err)
    distributed.barrier(dist)
    return Suspended(step=progress.step, submission_time_s=progress.submission_time_s,
                     checkpoint=None if error else path, error=error)


def _rng(seed: int, step: int) -> np.ndarray:
    """AlgoPerf hands submissions an int32 array of shape (2,) as their random key."""
    return np.array([seed % 2**31, step % 2**31], dtype=np.int32)
