"""One trial, end to end: load the submission, run it, hand every event to the consumers.

`execute(config, consumers)` is what a local run, a tuning study and a SLURM job all call. The
recorder (algobench/recorder.py) is always there; the others are optional: the terminal
display (algobench/display.py), W&B (algobench/tracking.py, imported only by the callers that
log to it) and a SLURM job's log (algobench/slurm/job.py). A consumer is any callable taking an
event; one that also has `open(trial_dir)` and `close(exit_code)` is told where the trial lands
before it starts and that it is over (exit code 0, 1 for a failure, 130 for Ctrl-C).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from algobench import checkpoint as ckpt
from algobench import distributed
from algobench import submission as submission_lib
from algobench.errors import UserError
from algobench.events import Ended, Event, Suspended
from algobench.layout import trial_dir
from algobench.recorder import TrialRecorder
from algobench.runner import run_trial
from algobench.specs import TrialConfig

Consumer = Callable[[Event], None]


class TrialSuspended(Exception):
    """The trial stopped between two steps on request, its state saved in its folder."""

    def __init__(self, event: Suspended, trial_dir: Path) -> None:
        where = event.checkpoint or f"nowhere: {event.error}"
        super().__init__(f"suspended at step {event.step}; checkpoint: {where}")
        self.event, self.trial_dir = event, trial_dir


class TrialInterrupted(KeyboardInterrupt):
    """Ctrl-C during a trial: its folder is left without summary.json (unfinished)."""

    def __init__(self, trial_dir: Path) -> None:
        super().__init__(f"interrupted: {trial_dir} has no summary.json (an unfinished trial)")
        self.trial_dir = trial_dir


def folder_for(config: TrialConfig) -> Path:
    """Where `config`'s trial lands (algobench/layout.py), named after its submission."""
    return trial_dir(config, submission_lib.resolve(config.submission)[0])


def execute(config: TrialConfig, consumers: Sequence[Consumer] = (), *, trial_dir: Path | None = None,
            resumable: bool = False, suspend: Callable[[], bool] | None = None) -> tuple[dict | None, Path]:
    """Run `config` to its end and return (summary, trial folder).

    `resumable`: continue from the checkpoint in the trial folder when there is one, and when
    `suspend()` turns true save one there and raise `TrialSuspended`. Under torchrun (or a SLURM
    job of several tasks) every process calls this: rank 0 alone records results and feeds the
    consumers; the others get None for the summary.
    A Ctrl-C or kill leaves the folder without summary.json: an unfinished trial."""
    dist = distributed.from_env()
    joined = dist.active and not torch.distributed.is_initialized()
    distributed.init(dist, config.options.device)
    sub = submission_lib.load(config.submission, framework=config.framework)
    folder = distributed.from_main(dist, trial_dir or folder_for(config))
    fresh = not folder.exists()  # a folder this call makes is removed again if the trial never starts
    recorder = TrialRecorder(folder) if dist.is_main else None
    feed = [recorder, *consumers] if recorder is not None else []
    for consumer in feed:
        if hasattr(consumer, "open"):
            consumer.open(folder)
    exit_code = 1  # unless the trial ends: a harness error
    discard = False
    try:
        checkpoint = ckpt.path_in(folder) if resumable else None
        for event in run_trial(config, sub, checkpoint=checkpoint, suspend=suspend, dist=dist):
            if isinstance(event, Suspended):
                exit_code = 0
                raise TrialSuspended(event, folder)
            for consumer in feed:
                consumer(event)
            if isinstance(event, Ended):
                exit_code = 1 if event.status == "failed" else 0
        return (recorder.summary if recorder is not None else None), folder
    except KeyboardInterrupt:
        exit_code = 130
        raise TrialInterrupted(folder) from None
    except UserError:  # bad input (data, shards) found on the way: no trial is recorded
        discard = fresh and dist.is_main
        raise
    finally:
        for consumer in feed:
            if hasattr(consumer, "close"):
                consumer.close(exit_code=exit_code)
        if discard:
            shutil.rmtree(folder, ignore_errors=True)
        if joined:
            torch.distributed.destroy_process_group()
