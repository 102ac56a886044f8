"""Where a trial's files live and what summary.json holds: one place for both.

results/<workload>/<size>/<submission>/<trial folder>/
    metadata.json    config, preset, submission, versions, hardware (written at the start)
    evals.parquet    one row per eval: step, submission_time_s, eval_time_s, wall_time_s, metrics
    train.parquet    one row per loss printout: step, submission_time_s, train_loss
    summary.json     the outcome (`Summary`): its presence means "finished"
    checkpoint.pt    only while a resumable trial is suspended or running

`Summary` is the one schema of summary.json: the recorder validates what it writes with it, and
every reader (studies, SLURM jobs, `runs`, scoring, the tests' fixtures) parses with it.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from algobench.specs import Target, TrialConfig

METADATA = "metadata.json"
SUMMARY = "summary.json"
EVALS = "evals.parquet"
TRAIN = "train.parquet"
CHECKPOINT = "checkpoint.pt"
TRIAL_FILES = (METADATA, EVALS, TRAIN)  # written before the end: any of them without SUMMARY = unfinished
SCHEMA_VERSION = 2  # 2 added the refined crossing, contention, overrides and FLOPs; 1 is still read
STATUSES = ("reached", "not_reached", "failed")


def trial_dir(config: TrialConfig, submission: str) -> Path:
    """Where `config`'s trial lands, `submission` being the submission's resolved name:
    results/<workload>/<size>/<submission>/<study<k>-trial<i> | run-<time>-seed<s>> (with a
    `<framework>-` prefix outside torch). A plain run never reuses a folder: two in the same second
    get -2, -3, ..."""
    name = (f"study{config.study}-trial{config.trial}" if config.study is not None
            else f"run-{datetime.now().strftime('%Y%m%d-%H%M%S')}-seed{config.seed}")
    if config.framework != "torch":  # the same submission's trials in another framework, side by side
        name = f"{config.framework}-{name}"
    path = Path(config.results_dir) / config.workload / config.size / submission / name
    n = 1
    while path.exists() and config.study is None:
        n += 1
        path = path.with_name(f"{name}-{n}")
    return path


class Contention(BaseModel):
    """What else ran on the machine during the trial (see algobench/contention.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    load_avg_max: float | None = None  # the 1-minute load average, highest reading
    cpu_count: int  # cores available to the trial
    run_queue_mean: float | None = None  # threads wanting to run, mean of once-a-second samples
    run_queue_max: int | None = None
    other_gpu_processes: int | None = None  # None: not a GPU trial, or not measurable
    contended: bool


class Summary(BaseModel):
    """summary.json: the outcome of one trial."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_version: Literal[1, 2]
    trial_id: str
    workload: str
    size: str
    submission: str
    framework: str = "torch"
    ruleset: Literal["external", "self"]
    study: int | None = None
    trial: int | None = None
    seed: int | None = None
    status: Literal["reached", "not_reached", "failed"]
    reason: str
    traceback: str | None = None
    target: Target
    time_to_target_s: float | None = Field(default=None, ge=0)  # AlgoPerf's: at the first eval meeting it
    steps_to_target: int | None = Field(default=None, ge=0)
    budget_s: float = Field(gt=0)
    steps: int = Field(ge=0)
    submission_time_s: float = Field(ge=0)
    eval_time_s: float = Field(default=0.0, ge=0)
    wall_time_s: float = Field(default=0.0, ge=0)
    final_metrics: dict[str, float | None] = Field(default_factory=dict)
    hardware: dict[str, Any] = Field(default_factory=dict)
    hardware_key: str
    hparams: dict[str, Any] | None = None
    requeues: int = Field(default=0, ge=0)
    compile_time_s: float | None = None
    # schema 2
    refined_time_to_target_s: float | None = Field(default=None, ge=0)  # at the first snapshot meeting it
    refined_steps_to_target: int | None = Field(default=None, ge=0)
    refine_time_s: float | None = Field(default=None, ge=0)  # snapshots + their evals, off the clock
    refine_evals: int = Field(default=0, ge=0)  # evaluations of snapshots the bisection made
    contention: Contention | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)  # preset settings changed by the user
    train_flops_per_step: float | None = None
    achieved_flops_per_s: float | None = None  # over submission time
    mfu: float | None = None  # None: the device's peak is not known (a CPU, say)

    @model_validator(mode="after")
    def _consistent(self) -> Summary:
        reached = self.status == "reached"
        if reached != (self.time_to_target_s is not None) or reached != (self.steps_to_target is not None):
            raise ValueError("time_to_target_s and steps_to_target are set exactly when the status is 'reached'")
        if (self.refined_time_to_target_s is None) != (self.refined_steps_to_target is None):
            raise ValueError("refined_time_to_target_s and refined_steps_to_target are set together")
        if self.refined_steps_to_target is not None:
            if not reached:
                raise ValueError("a refined crossing exists only for a trial that reached its target")
            if self.refined_steps_to_target > self.steps_to_target:
                raise ValueError("the refined crossing cannot come after the eval that met the target")
        if self.steps_to_target is not None and self.steps_to_target > self.steps:
            raise ValueError("steps_to_target cannot exceed steps")
        if self.status == "failed" and not self.reason:
            raise ValueError("a failed trial names its reason")
        return self

    @property
    def ttt_s(self) -> float | None:
        """The time-to-target scoring uses by default: the refined one where there is one."""
        return self.refined_time_to_target_s if self.refined_time_to_target_s is not None else self.time_to_target_s


def read_summary(path: Path) -> Summary | str:
    """The parsed summary.json at `path` (a file or a trial folder), or why it cannot be used."""
    path = Path(path)
    if path.is_dir():
        path = path / SUMMARY
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        return f"unreadable: {error}"
    except json.JSONDecodeError as error:
        return f"corrupt JSON: {error}"
    if not isinstance(raw, dict) or "schema_version" not in raw:
        return "not an algobench summary.json (no schema_version)"
    if raw["schema_version"] not in (1, SCHEMA_VERSION):
        return f"unsupported schema_version {raw['schema_version']!r} (this reader knows 1 and {SCHEMA_VERSION})"
    try:
        return Summary.model_validate(raw)
    except ValidationError as error:
        return f"invalid summary: {_first_error(error)}"


def validate_summary(data: dict) -> Summary:
    """`data` as a Summary; ValueError naming the first bad field (what the recorder checks)."""
    try:
        return Summary.model_validate(data)
    except ValidationError as error:
        raise ValueError(f"invalid summary: {_first_error(error)}") from None


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "summary"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"
