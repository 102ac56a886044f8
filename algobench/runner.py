"""Run one trial and yield what happens, under AlgoPerf's timing rules.

The clock starts after data setup, model init and optimizer init. Submission time is the sum
of the steps (data selection + update, compilation included); evaluation, logging and the
refinement snapshots are off the clock. Evaluation happens every `eval_period_s` of submission
time (or every `eval_period_steps` steps) and at the end. A trial stops at the target, at the
budget, at `max_steps`, when the submission raises or diverges, or when it raises
`TrainingComplete`.

Reading `run_trial` top to bottom: `_setup` (off the clock), then per step `_train_step` (on
the clock), the loss printout (`_log`), the stop reason (`_stop_reason`), and when an eval is due
`_evaluate`; between evals `Refiner` keeps a few snapshots of the weights so that, when an eval
meets the target, the first snapshot that already met it is found (the refined crossing).

A trial may also be suspended between two steps (SLURM preemption or time limit): its state goes
to a checkpoint (algobench/checkpoint.py) and a later run continues from it with the clock where
it stopped. Under DDP (algobench/distributed.py) every rank runs this loop on its slice of the
global batch. What depends on the framework (torch or jax) goes through `algobench.frameworks`.
"""

from __future__ import annotations

import dataclasses
import math
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from algobench import checkpoint as ckpt
from algobench import distributed
from algobench import flops
from algobench import submission as submission_lib
from algobench.clock import Stopwatch
from algobench.contention import Monitor
from algobench.distributed import SINGLE, Dist
from algobench.errors import TrainingComplete, UserError
from algobench.events import Ended, Evaluated, Event, Resume, Started, Suspended, TrainLog
from algobench.forms.base import contract_kwargs, eval_result, takes_train_state, train_state
from algobench.frameworks import Framework, framework_for
from algobench.specs import Preset, TrialConfig, apply_overrides
from algobench.workload import WorkloadSpec, ensure_trial_data
from workloads import WORKLOADS

OVERRIDABLE = ("budget_s", "eval_period_s", "eval_period_steps", "batch_size", "max_steps")  # change a result
SNAPSHOTS_PER_INTERVAL = 8


@dataclass
class LoopState:
    """The loop's own state besides model and optimizer: what a checkpoint keeps of it."""

    step: int = 0
    batches_drawn: int = 0  # data position: batches taken from the train iterator
    submission_time_s: float = 0.0
    eval_time_s: float = 0.0
    wall_time_s: float = 0.0  # running time only: queueing and restarts are not counted
    next_eval_s: float = 0.0
    requeues: int = 0  # times the trial was suspended and resumed
    eval_results: list = field(default_factory=list)  # AlgoPerf's [(step, {"validation/loss": ...})]
    last_eval_time: float = 0.0  # time.time() at the end of the latest eval (AlgoPerf's train_state)
    last_metrics: dict = field(default_factory=dict)
    evals: list = field(default_factory=list)  # Evaluated rows, as in evals.parquet
    train: list = field(default_factory=list)  # TrainLog rows, as in train.parquet
    last_eval_step: int = 0
    refine_time_s: float = 0.0
    refine_evals: int = 0
    contention: dict = field(default_factory=dict)  # Monitor.state()

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any]) -> LoopState:
        names = {f.name for f in dataclasses.fields(cls)}
        state = cls(**{k: v for k, v in saved.items() if k in names})
        state.requeues += 1
        state.eval_results = [tuple(r) for r in state.eval_results]
        return state


def overrides(options: Any) -> dict[str, Any]:
    """The preset settings a trial's options change: results with them are not default results."""
    return {name: getattr(options, name) for name in OVERRIDABLE if getattr(options, name) is not None}


def ensure_data(config: TrialConfig) -> WorkloadSpec:
    """The workload of `config`, its data made ready (prepared here when that takes seconds)."""
    spec = WORKLOADS.get(config.workload)
    ensure_trial_data(spec, config)
    return spec


def run_trial(config: TrialConfig, submission: submission_lib.Submission | None = None, *,
              checkpoint: Path | None = None, suspend: Callable[[], bool] | None = None,
              dist: Dist = SINGLE) -> Iterator[Event]:
    """Run one trial, yielding its events.

    With `checkpoint` (a file path), the trial resumes from that file when it exists, and when
    `suspend()` turns true (checked between steps) it saves its full state there, yields
    `Suspended` and stops. `dist` is this process's rank in data-parallel training."""
    t = _setup(config, submission, checkpoint, dist)
    try:
        yield from _loop(t, checkpoint, suspend, dist)
    finally:
        # Now, not when the garbage collector gets to the trial (its clock's sync closes over it): a
        # loader's workers would prefetch on, and stop (up to 5 s each) inside the next trial's clock.
        t.batches.close()
        t.monitor.stop()


def _loop(t: _Trial, checkpoint: Path | None, suspend: Callable[[], bool] | None, dist: Dist) -> Iterator[Event]:
    yield t.started
    if t.setup_failure:  # the submission's init_optimizer_state raised: a failed trial, recorded
        yield t.ended(t.setup_failure)
        return
    can_suspend = checkpoint is not None and suspend is not None
    t.clock.resume()
    while True:
        if can_suspend and (t.suspend_agreed if dist.active else suspend()):
            yield t.suspend(checkpoint)
            return
        failure = t.train_step()
        if failure:
            break
        logged, failure = t.log(suspend)
        if logged is not None:
            yield logged
        if failure:
            break
        stop = t.stop_reason()
        if not (t.eval_due() or stop):
            t.refiner.after_step(t)
            continue
        evaluated, failure, end = t.evaluate(stop)
        if evaluated is not None:
            yield evaluated
        if failure or end:
            break
        t.clock.resume()
    yield t.ended(failure) if failure else end
    if checkpoint is not None and dist.is_main:  # the trial is over: its checkpoint is not needed
        checkpoint.unlink(missing_ok=True)


Failure = tuple[str, str | None]  # (reason, traceback)


@dataclass
class _Trial:
    """A running trial: everything `run_trial`'s steps read and change."""

    config: TrialConfig
    sub: submission_lib.Submission
    hparams: Any
    framework: Framework
    workload: Any
    preset: Preset
    model: Any
    optimizer_state: Any
    model_state: Any
    batches: ckpt.CountingIterator
    state: LoopState
    identity: str
    dist: Dist
    started: Started
    clock: Stopwatch
    monitor: Monitor
    refiner: Refiner
    pass_train_state: bool
    wall_start: float = 0.0
    loss: Any = None
    last_step_end_time: float = 0.0  # time.time(), for train_state
    stop: str | None = None  # set by a step that ends training (TrainingComplete)
    agreed_elapsed_s: float | None = None  # DDP: the submission time all ranks agreed on
    suspend_agreed: bool = False
    setup_failure: Failure | None = None  # init_optimizer_state raised

    # --- one step, on the clock ----------------------------------------------------------------
    def train_step(self) -> Failure | None:
        s = self.state
        try:
            rng = _rng(self.config.seed, s.step)
            batch = self.sub.data_selection(
                workload=self.workload, input_queue=self.batches, optimizer_state=self.optimizer_state,
                current_param_container=self.model, model_state=self.model_state, hyperparameters=self.hparams,
                global_step=s.step, rng=rng)
            kwargs = self._contract(rng)
            if self.pass_train_state:
                kwargs["train_state"] = train_state(
                    global_step=s.step, submission_time_s=self.clock.elapsed_s, eval_time_s=s.eval_time_s,
                    budget_s=self.preset.budget_s, last_eval_time=s.last_eval_time,
                    last_step_end_time=self.last_step_end_time)
            out = self.sub.update_params(batch=batch, **kwargs)
            self.optimizer_state, self.model, self.model_state = out[:3]
            self.loss = out[3] if len(out) > 3 else None
            s.step += 1
            self.last_step_end_time = time.time()
        except TrainingComplete:
            s.step += 1
            self.stop = "training complete (submission)"
        except Exception as err:  # the submission failed, not the harness
            self.clock.pause()
            return f"exception: {type(err).__name__}: {err}", traceback.format_exc()
        return None

    def _contract(self, rng: np.ndarray) -> dict[str, Any]:
        s = self.state
        return contract_kwargs(workload=self.workload, params=self.model, model_state=self.model_state,
                               hyperparameters=self.hparams, loss_type=self.workload.loss_type,
                               optimizer_state=self.optimizer_state, eval_results=s.eval_results,
                               global_step=s.step, rng=rng)

    # --- the loss printout every log_every_steps: the one host sync between evals -------------
    def log(self, suspend: Callable[[], bool] | None) -> tuple[TrainLog | None, Failure | None]:
        s, dist = self.state, self.dist
        self.agreed_elapsed_s = None
        if s.step % self.preset.log_every_steps or (self.loss is None and not dist.active):
            return None, None
        self.clock.pause()
        if dist.active:
            value, self.agreed_elapsed_s, self.suspend_agreed = distributed.agree(
                dist, loss=self.loss, elapsed_s=self.clock.elapsed_s, suspend=bool(suspend and suspend()),
                device=self.framework.backend.device)
        else:
            value = float(self.loss)
        self.clock.resume()
        if value is None:
            return None, None
        logged = TrainLog(step=s.step, submission_time_s=self.clock.elapsed_s, loss=value)
        s.train.append(logged.row())
        if not math.isfinite(value):
            self.clock.pause()
            return logged, (f"diverged: non-finite training loss at step {s.step}", None)
        return logged, None

    # --- when to stop and when to evaluate ------------------------------------------------------
    def elapsed_s(self) -> float | None:
        """The submission time the stopping rules read; DDP: only the agreed one, at printouts."""
        return self.agreed_elapsed_s if self.dist.active else self.clock.elapsed_s

    def stop_reason(self) -> str | None:
        max_steps, elapsed = self.config.options.max_steps, self.elapsed_s()
        if self.stop:
            return self.stop
        if max_steps is not None and self.state.step >= max_steps:
            return "max steps"
        if elapsed is not None and elapsed >= self.preset.budget_s:
            return "budget exhausted"
        return None

    def eval_due(self) -> bool:
        if self.preset.eval_period_steps:
            return self.state.step % self.preset.eval_period_steps == 0
        elapsed = self.elapsed_s()
        return elapsed is not None and elapsed >= self.state.next_eval_s

    # --- evaluation, off the clock (prepare_for_eval is on it, as in AlgoPerf) ---------------------
    def evaluate(self, stop: str | None) -> tuple[Evaluated | None, Failure | None, Ended | None]:
        s, target = self.state, self.preset.target
        try:
            if self.sub.prepare_for_eval is not None:
                self.optimizer_state, self.model, self.model_state = self.sub.prepare_for_eval(
                    **self._contract(_rng(self.config.seed, s.step)))[:3]
        except Exception as err:
            self.clock.pause()
            return None, (f"exception: {type(err).__name__}: {err}", traceback.format_exc()), None
        self.clock.pause()
        eval_start = time.perf_counter()
        if not self.framework.params_finite(self.model):
            return None, (f"diverged: non-finite parameters at step {s.step}", None), None
        # The target's split at every eval; the others only when the trial ends here.
        by_split = {target_split(target.metric): self.workload.evaluate(self.model, target_split(target.metric))}
        met = target.met(_flat(by_split))
        if met or stop:
            for split in self.workload.eval_splits:
                by_split.setdefault(split, self.workload.evaluate(self.model, split))
        s.eval_time_s += time.perf_counter() - eval_start
        self.monitor.read()
        s.last_metrics = _flat(by_split)
        logged = ([r["train_loss"] for r in s.train if r["step"] > s.last_eval_step]
                  or [r["train_loss"] for r in s.train[-1:]])
        s.last_eval_time = self.last_step_end_time = time.time()
        s.eval_results.append((s.step, eval_result(
            by_split, train_loss=sum(logged) / len(logged) if logged else None, submission_time_s=self.clock.elapsed_s,
            eval_time_s=s.eval_time_s, total_duration_s=time.perf_counter() - self.wall_start)))
        evaluated = Evaluated(step=s.step, submission_time_s=self.clock.elapsed_s, eval_time_s=s.eval_time_s,
                              wall_time_s=time.perf_counter() - self.wall_start, metrics=s.last_metrics)
        s.evals.append(evaluated.row())
        if not all(math.isfinite(v) for v in s.last_metrics.values()):
            return evaluated, (f"diverged: non-finite eval metric at step {s.step}", None), None
        if met:
            refined = self.refiner.crossing(self)
            return evaluated, None, self.ended(None, status="reached", reason="target reached",
                                               time_to_target_s=self.clock.elapsed_s, steps_to_target=s.step,
                                               refined=refined)
        if stop:
            return evaluated, None, self.ended(None, status="not_reached", reason=stop)
        self.refiner.interval_done(self, s.step - s.last_eval_step)
        s.last_eval_step = s.step
        # DDP: from the agreed time, so that every rank expects the next eval at the same time
        elapsed = self.agreed_elapsed_s if self.dist.active and self.agreed_elapsed_s is not None \
            else self.clock.elapsed_s
        s.next_eval_s = elapsed + self.preset.eval_period_s
        return evaluated, None, None

    # --- the end, and suspension ----------------------------------------------------------------
    def ended(self, failure: Failure | None, *, status: str = "failed", reason: str = "",
              refined: tuple[int, float] | None = None, **kwargs: Any) -> Ended:
        s = self.state
        if failure:
            reason, kwargs["traceback"] = failure
        self.monitor.stop()
        s.contention = self.monitor.state()
        extra = {"contention": self.monitor.result(),
                 "refine_time_s": round(s.refine_time_s, 6) if self.refiner.enabled else None,
                 "refine_evals": s.refine_evals}
        if refined is not None:
            extra["refined_steps_to_target"], extra["refined_time_to_target_s"] = refined
        extra.update(self.flops())
        return Ended(status=status, reason=reason, steps=s.step, submission_time_s=self.clock.elapsed_s,
                     eval_time_s=s.eval_time_s, wall_time_s=time.perf_counter() - self.wall_start,
                     final_metrics=s.last_metrics, requeues=s.requeues,
                     compile_time_s=self.framework.compile_time_s(), extra=extra, **kwargs)

    def flops(self) -> dict[str, float | None]:
        """train_flops_per_step (the global batch), achieved_flops_per_s over submission time, and
        MFU against the device's dense peak at the precision the matmuls ran in (None if unknown)."""
        spec = WORKLOADS.get(self.config.workload)
        cost = spec.cost(self.preset) if spec.cost is not None else None
        backend = self.framework.describe()
        device = str(backend["device"])  # torch: 'cuda:0', 'cpu'; jax: 'gpu x8', 'cpu x1'
        on_cuda = device.startswith(("cuda", "gpu")) and torch.cuda.is_available()
        name = torch.cuda.get_device_name(torch.device(device).index or 0 if device.startswith("cuda") else 0) \
            if on_cuda else None
        return flops.trial_flops(
            train_flops_per_example=cost.train_flops_per_example if cost else None,
            batch_size=self.started.batch_size, steps=self.state.step, submission_time_s=self.clock.elapsed_s,
            device_name=name, precision=flops.matmul_precision(backend["precision"], "cuda" if on_cuda else "cpu"),
            n_devices=self.dist.world_size)

    def suspend(self, path: Path) -> Suspended:
        """Rank 0 writes the checkpoint; every rank waits for it before stopping."""
        s = self.state
        self.clock.pause()
        s.submission_time_s, s.wall_time_s = self.clock.elapsed_s, time.perf_counter() - self.wall_start
        s.batches_drawn = self.batches.drawn
        s.contention = self.monitor.state()
        self.monitor.stop()
        error = None
        if self.dist.is_main:
            try:
                self.framework.save(path, identity=self.identity, progress=dataclasses.asdict(s), model=self.model,
                                    optimizer_state=self.optimizer_state, model_state=self.model_state)
            except ckpt.CheckpointError as err:  # the trial will start over after the requeue
                error = str(err)
        distributed.barrier(self.dist)
        return Suspended(step=s.step, submission_time_s=s.submission_time_s,
                         checkpoint=None if error else path, error=error)


class Refiner:
    """Snapshots of the weights between evals, and the search for the first one meeting the target.

    After each step that is not an eval, every `stride` steps, the weights are copied off the
    clock (with the submission time they were reached at). Never more than
    `SNAPSHOTS_PER_INTERVAL` are kept: past that, every other one is dropped and the stride
    doubles; after an eval the stride restarts at the last interval's steps / 8. When an eval
    meets the target, a bisection over the interval's snapshots (evaluating the target's split
    only) finds the first one that meets it: the refined crossing. Off for submissions with
    `prepare_for_eval`, whose evaluated weights are not the trained ones (schedule-free, LAWA):
    their refined crossing is the eval's.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.stride = 1
        self.snaps: list[tuple[int, float, Any]] = []  # (step, submission time, weights)

    def after_step(self, t: _Trial) -> None:
        step = t.state.step
        if not self.enabled or step % self.stride:
            return
        t.clock.pause()
        start = time.perf_counter()
        self.snaps.append((step, t.clock.elapsed_s, t.framework.snapshot(t.model)))
        if len(self.snaps) > SNAPSHOTS_PER_INTERVAL:
            self.stride *= 2
            self.snaps = [snap for snap in self.snaps if snap[0] % self.stride == 0]
        t.state.refine_time_s += time.perf_counter() - start
        t.clock.resume()

    def interval_done(self, t: _Trial, interval_steps: int) -> None:
        self.snaps = []
        self.stride = max(1, interval_steps // SNAPSHOTS_PER_INTERVAL)

    def crossing(self, t: _Trial) -> tuple[int, float]:
        """(step, submission time) of the first snapshot meeting the target; the eval's own when
        none of them does (or there are none)."""
        s, target = t.state, t.preset.target
        if not self.snaps:
            return s.step, t.clock.elapsed_s
        start = time.perf_counter()
        current = t.framework.snapshot(t.model)
        split = target_split(target.metric)
        lo, hi = 0, len(self.snaps)  # index len(self.snaps): the eval itself, which met it
        while lo < hi:
            mid = (lo + hi) // 2
            t.model = t.framework.load_snapshot(t.model, self.snaps[mid][2])
            s.refine_evals += 1
            if target.met({f"{split}_{k}": v for k, v in t.workload.evaluate(t.model, split).items()}):
                hi = mid
            else:
                lo = mid + 1
        t.model = t.framework.load_snapshot(t.model, current)
        s.refine_time_s += time.perf_counter() - start
        if lo == len(self.snaps):
            return s.step, t.clock.elapsed_s
        step, at_s, _ = self.snaps[lo]
        return step, at_s


def target_split(metric: str) -> str:
    """The split a target metric is measured on: 'val_loss' -> 'val'."""
    return metric.split("_", 1)[0]


def _flat(by_split: dict[str, dict[str, float]]) -> dict[str, float]:
    return {f"{split}_{k}": v for split, ms in by_split.items() for k, v in ms.items()}


# --- setup, off the clock: data, model, optimizer, and the checkpoint to resume from ---------------

def _setup(config: TrialConfig, sub: submission_lib.Submission | None, checkpoint: Path | None,
           dist: Dist) -> _Trial:
    sub = sub or submission_lib.load(config.submission, framework=config.framework)
    if (sub.form == "optax") != (config.framework == "jax"):
        raise UserError(f"submission {sub.name} was loaded in its {sub.form} form for a {config.framework} trial")
    hparams_dict = sub.hparams(config.hparams)
    hparams = sub.contract_hparams(hparams_dict, ruleset=config.ruleset)
    opts = config.options
    spec = ensure_data(config)
    framework = framework_for(config, spec, dist)
    preset = apply_overrides(spec.preset(config.size), opts)
    workload = framework.prepare(config, spec, preset)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    model = framework.init_model(workload, config.seed, dist)
    model_state = None
    # --batch-size, else the submission's choice (None: no opinion), else the preset's
    batch_size = opts.batch_size or (sub.get_batch_size(workload) if sub.get_batch_size else None) or preset.batch_size
    setup_failure = None
    try:
        optimizer_state = sub.init_optimizer_state(workload=workload, model_params=model, model_state=model_state,
                                                   hyperparameters=hparams, rng=_rng(config.seed, 0))
    except Exception as err:  # the submission failed, not the harness: recorded as a failed trial
        optimizer_state, setup_failure = None, (f"exception in init_optimizer_state: {type(err).__name__}: {err}",
                                                traceback.format_exc())
    identity = ckpt.identity(config, sub.sha256)
    found, discarded = ckpt.find(checkpoint, identity=identity, dist=dist)
    state = LoopState.from_checkpoint(found.progress) if found else LoopState(next_eval_s=preset.eval_period_s)
    batches = ckpt.CountingIterator(workload.train_batches(
        seed=config.seed, batch_size=batch_size, rank=dist.rank, world_size=dist.world_size,
        start_step=state.batches_drawn), drawn=state.batches_drawn)
    resume = None
    if found is not None and setup_failure is None:  # after the batches: restoring sets the RNGs as they were at suspension
        model, optimizer_state, model_state = framework.restore(found, model=model, optimizer_state=optimizer_state,
                                                                model_state=model_state)
        resume = Resume(step=state.step, requeues=state.requeues, submission_time_s=state.submission_time_s,
                        evals=list(state.evals), train=list(state.train))
    started = Started(config=config, preset=preset, submission=sub.info, hparams=hparams_dict,
                      backend=framework.describe(), batch_size=batch_size, n_params=framework.n_params(model),
                      overrides=overrides(opts), resume=resume, checkpoint_discarded=discarded)
    gpu = getattr(getattr(framework, "backend", None), "device", None)
    monitor = Monitor(gpu_index=(gpu.index or 0) if isinstance(gpu, torch.device) and gpu.type == "cuda" else None,
                      readings=state.contention or None).start()
    clock = Stopwatch(sync=lambda: framework.sync(t.model))  # (the model of the latest step)
    clock.restore(state.submission_time_s)
    t = _Trial(config=config, sub=sub, hparams=hparams, framework=framework, workload=workload, preset=preset,
               model=model, optimizer_state=optimizer_state, model_state=model_state, batches=batches, state=state,
               identity=identity, dist=dist, started=started, clock=clock, monitor=monitor,
               refiner=Refiner(enabled=sub.prepare_for_eval is None),
               pass_train_state=takes_train_state(sub.update_params),
               wall_start=time.perf_counter() - state.wall_time_s, setup_failure=setup_failure,
               last_step_end_time=time.time())
    return t


def _rng(seed: int, step: int) -> np.ndarray:
    """AlgoPerf hands submissions an int32 array of shape (2,) as their random key."""
    return np.array([seed % 2**31, step % 2**31], dtype=np.int32)
