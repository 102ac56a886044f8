"""What a SLURM job runs: one trial through `algobench.trial.execute` (the function a local run
calls), on a trial folder chosen at submission, resumable. SLURM's warning signal (USR2,
`signal_delay_s` before a preemption or the time limit) makes the trial save its checkpoint at
the next step boundary; submitit then requeues the job and the trial goes on from the checkpoint
with its clock where it stopped. The job's log gets plain lines (`JobLog`), not progress bars."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import submitit
import torch

from algobench import checkpoint as ckpt
from algobench import distributed
from algobench import layout
from algobench.events import Ended, Evaluated, Event, Started
from algobench.slurm.entry import EARLY_SIGNAL
from algobench.specs import TrialConfig
from algobench.trial import TrialSuspended, execute


class TrialJob(submitit.helpers.Checkpointable):
    """What a job runs: one trial through `algobench.trial.execute`, resumable.

    submitit pickles this object, runs it in the job, and on requeue runs the same object again:
    the trial then finds its checkpoint in `trial_dir`."""

    def __init__(self, config: TrialConfig, trial_dir: Path) -> None:
        self.config, self.trial_dir = config, Path(trial_dir)

    def __call__(self) -> dict | None:
        done = layout.read_summary(self.trial_dir) if (self.trial_dir / layout.SUMMARY).exists() else None
        if isinstance(done, layout.Summary):  # requeued after the trial ended (a late signal): never run it twice
            return done.model_dump(mode="json")
        env = submitit.JobEnvironment()
        _use_allocated_cpus()
        if env.num_tasks > 1:
            distributed.from_slurm_tasks()
        suspend = ckpt.SuspendOnSignal(getattr(signal, f"SIG{submitit.JobEnvironment.USR_SIG}"))
        suspend.requested = bool(os.environ.pop(EARLY_SIGNAL, ""))  # came while the job was starting
        log = JobLog()
        try:
            summary, _ = execute(self.config, [log], trial_dir=self.trial_dir, resumable=True, suspend=suspend)
        except TrialSuspended as stop:
            if env.global_rank == 0:
                log.say(f"suspended at step {stop.event.step} "
                        f"({stop.event.submission_time_s:.2f} s of submission time); "
                        + (f"checkpoint {stop.event.checkpoint}" if stop.event.checkpoint
                           else f"no checkpoint ({stop.event.error}): the trial will start over"))
                suspend.forward()  # submitit: requeue the job (or fail: out of requeues) and exit
            raise SystemExit(0) from None  # other ranks: no result file, the job goes on requeued
        finally:
            suspend.close()
        return summary


class JobLog:
    """Runner events as plain lines in the job's log (rich progress bars do not suit a file)."""

    def say(self, line: str) -> None:
        print(f"[algobench] {line}", flush=True)

    def __call__(self, event: Event) -> None:
        if isinstance(event, Started):
            cfg = event.config
            self.say(f"{cfg.workload} ({cfg.size}) with {event.submission.name}, seed {cfg.seed}, "
                     f"batch {event.batch_size}, {event.backend['device']}")
            if event.checkpoint_discarded:
                self.say(f"checkpoint not used: {event.checkpoint_discarded}; the trial starts over")
            if event.resume:
                self.say(f"resumed from step {event.resume.step} at {event.resume.submission_time_s:.2f} s "
                         f"of submission time (requeue {event.resume.requeues})")
        elif isinstance(event, Evaluated):
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in event.metrics.items())
            self.say(f"eval at step {event.step}, {event.submission_time_s:.2f} s: {metrics}")
        elif isinstance(event, Ended):
            self.say(f"ended: {event.status} ({event.reason}) after {event.steps} steps")


def _use_allocated_cpus() -> None:
    """As many torch threads as CPUs SLURM gave the task, so array tasks do not fight over cores."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and cpus.isdigit():
        torch.set_num_threads(int(cpus))
