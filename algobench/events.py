"""What a running trial reports, as plain frozen data (no torch): the runner yields these events
and every consumer (the recorder, the terminal display, W&B, a SLURM job's log, a tuning
study's progress) reads them. Consumers import this module, never the runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from algobench.specs import Preset, TrialConfig


@dataclass(frozen=True)
class SubmissionInfo:
    """Which submission a trial runs: what its results record about it."""

    name: str
    path: Path
    form: str  # simple | full | algoperf | optax
    sha256: str


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
    preset: Preset  # with the command line's overrides applied
    submission: SubmissionInfo
    hparams: dict[str, Any] | None  # None: a self-tuning AlgoPerf file gets no hyperparameters
    backend: dict[str, Any]  # device, precision, compile
    batch_size: int
    n_params: int
    overrides: dict[str, Any] = field(default_factory=dict)  # preset settings the user changed
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
    extra: dict[str, Any] = field(default_factory=dict)  # further summary fields (refined crossing, ...)


@dataclass(frozen=True)
class Suspended:
    """The trial stopped between two steps with its state in `checkpoint` (None: it could not be
    saved, see `error`); running it again with the same checkpoint path continues it."""

    step: int
    submission_time_s: float
    checkpoint: Path | None
    error: str | None = None


Event = Started | TrainLog | Evaluated | Ended | Suspended
