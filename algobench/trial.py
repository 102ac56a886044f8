"""One trial, end to end: load the submission, run, record. Local and SLURM runs call this."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from algobench import checkpoint as ckpt
from algobench import distributed
from algobench import submission as submission_lib
from algobench.results import TrialRecorder, trial_dir_for
from algobench.runner import Event, Suspended, run_trial
from algobench.specs import TrialConfig


class TrialSuspended(Exception):
    """The trial stopped between two steps on request, its state saved in its folder."""

    def __init__(self, event: Suspended, trial_dir: Path) -> None:
        where = event.checkpoint or f"nowhere: {event.error}"
        super().__init__(f"suspended at step {event.step}; checkpoint: {where}")
        self.event, self.trial_dir = event, trial_dir


def execute(config: TrialConfig, *, on_event: Callable[[Event], None] | None = None,
            trial_dir: Path | None = None, resumable: bool = False,
            suspend: Callable[[], bool] | None = None) -> tuple[dict | None, Path]:
    """Run `config` to its end and return (summary, trial folder).

    `resumable`: continue from the checkpoint in the trial folder when there is one, and when
    `suspend()` turns true save one there and raise `TrialSuspended`. Under torchrun (or a SLURM
    job of several tasks) every process calls this: rank 0 alone records results and sees
    `on_event`; the others get None for the summary.
    A Ctrl-C or kill leaves the folder without summary.json: an unfinished trial."""
    import workloads  # noqa: F401  (registers the workloads)

    dist = distributed.from_env()
    joined = dist.active and not torch.distributed.is_initialized()
    distributed.init(dist, config.options.device)
    try:
        sub = submission_lib.load(config.submission, framework=config.framework)
        trial_dir = distributed.from_main(dist, trial_dir or trial_dir_for(
            config.results_dir, config.workload, config.size, sub.name, config.seed, config.study, config.trial,
            framework=config.framework))
        recorder = TrialRecorder(trial_dir) if dist.is_main else None
        checkpoint = ckpt.path_in(trial_dir) if resumable else None
        for event in run_trial(config, sub, checkpoint=checkpoint, suspend=suspend, dist=dist):
            if isinstance(event, Suspended):
                raise TrialSuspended(event, trial_dir)
            if recorder is not None:
                recorder(event)
                if on_event is not None:
                    on_event(event)
        return (recorder.summary if recorder is not None else None), trial_dir
    finally:
        if joined:
            torch.distributed.destroy_process_group()
