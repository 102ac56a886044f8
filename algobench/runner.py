"""Run one trial and yield what happens, under AlgoPerf's timing rules.

The clock starts after data setup, model init and optimizer init. Submission time is the sum
of the steps (data selection + update, compilation included); evaluation and logging are off
the clock. Evaluation happens every `eval_period_s` of submission time (or every
`eval_period_steps` steps) and at the end. A trial stops at the target, at the budget, at
`max_steps`, when the submission raises or diverges, or when it raises `TrainingComplete`.
"""

from __future__ import annotations

import inspect
import math
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from algobench import submission as submission_lib
from algobench.clock import Stopwatch
from algobench.errors import UserError
from algobench.specs import Preset, TrialConfig, apply_overrides
from algobench.workload import WORKLOADS, TorchBackend, TorchWorkload


@dataclass(frozen=True)
class Started:
    config: TrialConfig
    preset: Preset
    submission: submission_lib.Submission
    hparams: dict[str, Any]
    backend: dict[str, Any]
    batch_size: int
    n_params: int


@dataclass(frozen=True)
class TrainLog:
    step: int
    submission_time_s: float
    loss: float


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


Event = Started | TrainLog | Evaluated | Ended
ALGOPERF_SPLIT = {"val": "validation"}  # eval_results keys read 'validation/loss', as in AlgoPerf


def prepare_workload(config: TrialConfig, backend: TorchBackend) -> TorchWorkload:
    """Find the workload, make sure its data is there, and build it for torch."""
    spec = WORKLOADS.get(config.workload)
    if config.size not in spec.presets:
        raise UserError(f"workload {spec.name} has no size '{config.size}'; sizes: {', '.join(spec.presets)}")
    preset = apply_overrides(spec.presets[config.size], config.options)
    if not spec.data.is_ready(config.size, config.data_dir):
        if config.size not in spec.data.auto_prepare_sizes:
            raise UserError(
                f"data for {spec.name} ({config.size}) is not prepared in {config.data_dir}; run: "
                f"algobench data prepare {spec.name} --size {config.size} --data-dir {config.data_dir}")
        spec.data.prepare(config.size, config.data_dir)
    return spec.build_torch(preset=preset, size=config.size, data_dir=config.data_dir, backend=backend)


def run_trial(config: TrialConfig, submission: submission_lib.Submission | None = None) -> Iterator[Event]:
    sub = submission or submission_lib.load(config.submission)
    hparams_dict = sub.hparams(config.hparams)
    hparams = submission_lib.make_hparams(hparams_dict)
    opts = config.options
    backend = TorchBackend.choose(opts.device, opts.precision, opts.compile)

    # Setup, off the clock: data, model, optimizer.
    workload = prepare_workload(config, backend)
    preset = workload.preset
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    model = workload.init_model(config.seed)
    if backend.compile:
        model = torch.compile(model)
    model_state = None
    # --batch-size, else the submission's choice (None: no opinion), else the preset's
    batch_size = (opts.batch_size or (sub.get_batch_size(config.workload) if sub.get_batch_size else None)
                  or preset.batch_size)
    batches = workload.train_batches(seed=config.seed, batch_size=batch_size)
    rng = _rng(config.seed, 0)
    optimizer_state = sub.init_optimizer_state(
        workload=workload, model_params=model, model_state=model_state, hyperparameters=hparams, rng=rng)
    pass_train_state = "train_state" in inspect.signature(sub.update_params).parameters

    yield Started(config=config, preset=preset, submission=sub, hparams=hparams_dict,
                  backend=backend.describe(), batch_size=batch_size,
                  n_params=sum(p.numel() for p in model.parameters()))

    clock = Stopwatch(sync=backend.sync)
    wall_start = time.perf_counter()
    eval_time_s = 0.0
    eval_results: list[tuple[int, dict[str, float]]] = []
    next_eval_s = preset.eval_period_s
    step = 0
    loss = None
    stop_reason = None
    failure: tuple[str, str | None] | None = None  # (reason, traceback)
    last_metrics: dict[str, float] = {}

    def ended(status: str, reason: str, **extra) -> Ended:
        return Ended(status=status, reason=reason, steps=step, submission_time_s=clock.elapsed_s,
                     eval_time_s=eval_time_s, wall_time_s=time.perf_counter() - wall_start,
                     final_metrics=last_metrics, **extra)

    clock.resume()
    while True:
        # --- one step, on the clock -------------------------------------------------------
        try:
            step_rng = _rng(config.seed, step)
            batch = sub.data_selection(
                workload=workload, input_queue=batches, optimizer_state=optimizer_state,
                current_param_container=model, model_state=model_state, hyperparameters=hparams,
                global_step=step, rng=step_rng)
            kwargs = dict(
                workload=workload, current_param_container=model, current_params_types=workload.param_types,
                model_state=model_state, hyperparameters=hparams, batch=batch, loss_type="cross_entropy",
                optimizer_state=optimizer_state, eval_results=eval_results, global_step=step, rng=step_rng)
            if pass_train_state:
                kwargs["train_state"] = MappingProxyType({
                    "accumulated_submission_time": clock.elapsed_s, "global_step": step,
                    "last_eval_time": eval_results[-1][0] if eval_results else 0})
            out = sub.update_params(**kwargs)
            optimizer_state, model, model_state = out[:3]
            loss = out[3] if len(out) > 3 else None
            step += 1
        except submission_lib.TrainingComplete:
            step += 1
            stop_reason = "training complete (submission)"
        except Exception as err:  # the submission failed, not the harness
            clock.pause()
            failure = (f"exception: {type(err).__name__}: {err}", traceback.format_exc())
            break

        if opts.max_steps is not None and step >= opts.max_steps:
            stop_reason = stop_reason or "max steps"
        if clock.elapsed_s >= preset.budget_s:
            stop_reason = stop_reason or "budget exhausted"

        # --- loss printout every log_every_steps: the one host sync between evals ---------
        if loss is not None and step % preset.log_every_steps == 0:
            clock.pause()
            loss_value = float(loss)
            yield TrainLog(step=step, submission_time_s=clock.elapsed_s, loss=loss_value)
            if not math.isfinite(loss_value):
                failure = (f"diverged: non-finite training loss at step {step}", None)
                break
            clock.resume()

        due = (step % preset.eval_period_steps == 0) if preset.eval_period_steps else clock.elapsed_s >= next_eval_s
        if not (due or stop_reason):
            continue

        # --- evaluation, off the clock (prepare_for_eval is on it, as in AlgoPerf) ---------
        try:
            if sub.prepare_for_eval is not None:
                optimizer_state, model, model_state = sub.prepare_for_eval(
                    workload=workload, current_param_container=model, current_params_types=workload.param_types,
                    model_state=model_state, hyperparameters=hparams, loss_type="cross_entropy",
                    optimizer_state=optimizer_state, eval_results=eval_results, global_step=step,
                    rng=_rng(config.seed, step))[:3]
        except Exception as err:
            clock.pause()
            failure = (f"exception: {type(err).__name__}: {err}", traceback.format_exc())
            break
        clock.pause()
        eval_start = time.perf_counter()
        if not _params_finite(model):
            failure = (f"diverged: non-finite parameters at step {step}", None)
            break
        by_split = {split: workload.evaluate(model, split) for split in workload.eval_splits}
        eval_time_s += time.perf_counter() - eval_start
        last_metrics = {f"{split}_{k}": v for split, ms in by_split.items() for k, v in ms.items()}
        eval_results.append((step, {f"{ALGOPERF_SPLIT.get(split, split)}/{k}": v
                                    for split, ms in by_split.items() for k, v in ms.items()}))
        yield Evaluated(step=step, submission_time_s=clock.elapsed_s, eval_time_s=eval_time_s,
                        wall_time_s=time.perf_counter() - wall_start, metrics=last_metrics)
        if not all(math.isfinite(v) for v in last_metrics.values()):
            failure = (f"diverged: non-finite eval metric at step {step}", None)
            break
        if preset.target.met(last_metrics):
            yield ended("reached", "target reached", time_to_target_s=clock.elapsed_s, steps_to_target=step)
            return
        if stop_reason:
            yield ended("not_reached", stop_reason)
            return
        next_eval_s = clock.elapsed_s + preset.eval_period_s
        clock.resume()

    reason, tb = failure
    yield ended("failed", reason, traceback=tb)


def _rng(seed: int, step: int) -> np.ndarray:
    """AlgoPerf hands submissions an int32 array of shape (2,) as their random key."""
    return np.array([seed % 2**31, step % 2**31], dtype=np.int32)


@torch.no_grad()
def _params_finite(model: torch.nn.Module) -> bool:
    params = [p.detach() for p in model.parameters()]
    if not params:
        return True
    norms = torch._foreach_norm([p.float() if p.dtype not in (torch.float32, torch.float64) else p for p in params])
    return bool(torch.isfinite(torch.stack(norms)).all())
