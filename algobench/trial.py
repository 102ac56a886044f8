"""One trial, end to end: load the submission, run, record. Local and SLURM runs call this."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from algobench import submission as submission_lib
from algobench.results import TrialRecorder, trial_dir_for
from algobench.runner import Event, run_trial
from algobench.specs import TrialConfig


def execute(config: TrialConfig, *, on_event: Callable[[Event], None] | None = None,
            trial_dir: Path | None = None) -> tuple[dict, Path]:
    """Run `config` to its end and return (summary, trial folder).

    A Ctrl-C or kill leaves the folder without summary.json: an unfinished trial."""
    import workloads  # noqa: F401  (registers the workloads)

    sub = submission_lib.load(config.submission)
    trial_dir = trial_dir or trial_dir_for(config.results_dir, config.workload, config.size, sub.name,
                                           config.seed, config.study, config.trial)
    recorder = TrialRecorder(trial_dir)
    for event in run_trial(config, sub):
        recorder(event)
        if on_event is not None:
            on_event(event)
    return recorder.summary, trial_dir
