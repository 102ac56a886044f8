"""Typed, frozen configuration: targets, size presets and the trial config.

Precedence for a trial: the workload's size preset, then a file, then command-line overrides.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SIZES = ("smoke", "small", "full")
DEFAULT_RESULTS_DIR, DEFAULT_DATA_DIR = Path("results"), Path("data")  # relative to the current folder
Size = Literal["smoke", "small", "full"]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Target(Frozen):
    """A validation target: `Target(metric="val_loss", value=3.28, mode="min")`."""

    metric: str
    value: float
    mode: Literal["min", "max"]

    def met(self, metrics: Mapping[str, float]) -> bool:
        got = metrics.get(self.metric)
        if got is None or not math.isfinite(got):
            return False
        return got <= self.value if self.mode == "min" else got >= self.value

    def __str__(self) -> str:
        return f"{self.metric} {'<=' if self.mode == 'min' else '>='} {self.value:g}"


class Preset(Frozen):
    """One size of a workload: the same code with other numbers.

    `eval_period_steps`, when set, evaluates every that many steps instead of every
    `eval_period_s` of submission time: step-based evals make a CPU run's eval history
    reproducible to the bit, which the smoke size needs for its tests.
    """

    target: Target
    budget_s: float = Field(gt=0)
    eval_period_s: float = Field(gt=0)
    eval_period_steps: int | None = Field(default=None, gt=0)
    step_hint: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    log_every_steps: int = Field(default=10, gt=0)
    how_target_was_set: str
    config: Any = None  # the workload's own typed config (model and data numbers)


class RunOptions(Frozen):
    """How a trial runs, independent of what it runs."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: Literal["auto", "on", "off"] = "auto"
    max_steps: int | None = Field(default=None, gt=0)
    batch_size: int | None = Field(default=None, gt=0)  # global batch, overriding submission and preset
    budget_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    eval_period_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    eval_period_steps: int | None = Field(default=None, gt=0)
    log_every_steps: int | None = Field(default=None, gt=0)


class TrialConfig(Frozen):
    """Everything that defines one trial; saved in metadata.json."""

    workload: str
    size: Size = "smoke"
    submission: str  # registry name or path to a file
    framework: Literal["torch", "jax"] = "torch"  # scored apart (scoring --allow-mixed-frameworks)
    hparams: dict[str, Any] = Field(default_factory=dict)
    seed: int = Field(default=0, ge=0, lt=2**32)  # numpy's and torch's seed range
    ruleset: Literal["external", "self"] = "external"
    study: int | None = None
    trial: int | None = None
    results_dir: Path = DEFAULT_RESULTS_DIR
    data_dir: Path = DEFAULT_DATA_DIR
    options: RunOptions = RunOptions()

    @model_validator(mode="after")
    def _trial_needs_study(self) -> TrialConfig:
        if (self.study is None) != (self.trial is None):
            raise ValueError("study and trial are given together or not at all")
        return self


def apply_overrides(preset: Preset, options: RunOptions) -> Preset:
    """The preset with the command line's budget and eval-period overrides applied."""
    changes: dict[str, Any] = {}
    if options.budget_s is not None:
        changes["budget_s"] = options.budget_s
    if options.eval_period_s is not None:
        changes["eval_period_s"] = options.eval_period_s
        changes["eval_period_steps"] = None
    if options.eval_period_steps is not None:
        changes["eval_period_steps"] = options.eval_period_steps
    if options.log_every_steps is not None:
        changes["log_every_steps"] = options.log_every_steps
    return preset.model_copy(update=changes)
