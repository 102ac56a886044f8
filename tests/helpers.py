"""Helpers for the harness tests: a trial config and a run that collects the runner's events."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from algobench import submission as submission_lib
from algobench.events import Ended, Evaluated
from algobench.runner import run_trial
from algobench.specs import RunOptions, TrialConfig
from algobench.workload import ensure_data
from workloads import WORKLOADS


def config(data_dir: Path, submission: str = "adamw", **options) -> TrialConfig:
    options.setdefault("max_steps", 20)
    options.setdefault("eval_period_steps", 10)
    options.setdefault("budget_s", 100_000)  # steps, not seconds, end these runs: a loaded machine stays reproducible
    return TrialConfig(workload="gpt2", size="smoke", submission=submission, seed=options.pop("seed", 0),
                       hparams=options.pop("hparams", {}), data_dir=data_dir, options=RunOptions(**options))


def ensure_smoke(name: str, data_dir: Path) -> None:
    """`name`'s smoke data in `data_dir` (the session's shared `data_dir` fixture): prepared by
    whichever test, in whichever xdist worker, asks first; the others wait for it (a file lock)."""
    ensure_data(WORKLOADS.get(name), "smoke", data_dir)


def run(cfg: TrialConfig) -> tuple[list[Evaluated], Ended]:
    events = list(run_trial(cfg, submission_lib.load(cfg.submission)))
    return [e for e in events if isinstance(e, Evaluated)], events[-1]


def run_few_steps(workload: str, data_dir: Path, *, steps: int) -> tuple[list[Evaluated], Ended]:
    """A smoke trial of `workload` with AdamW for `steps` steps, evaluated at the last one."""
    return run(TrialConfig(workload=workload, size="smoke", submission="adamw", seed=0, data_dir=data_dir,
                           options=RunOptions(device="cpu", max_steps=steps, eval_period_steps=steps,
                                              budget_s=100_000)))


def sleeping_submission(base: str, seconds: float) -> str:
    """The source of a submission file: built-in `base` with a step that also sleeps `seconds`
    (CPU-free), so that a trial outlasts a signal or a time limit without burning the cores."""
    return f"""
import time
from submissions.{base} import HPARAMS, PAPER, SEARCH_SPACE, make_optimizer
from submissions.{base} import lr_schedule as base_schedule

def lr_schedule(*, step, step_hint, hparams):
    time.sleep({seconds})
    return base_schedule(step=step, step_hint=step_hint, hparams=hparams)
"""


def cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The installed `algobench` entry point, as a user runs it."""
    return subprocess.run([sys.executable, "-c", "from algobench.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=timeout)
