"""What the runner asks of a framework, and AlgoPerf's read-only workload attributes.

The runner (clock, eval scheduling, stopping rules) is framework-neutral. A framework builds the
workload for a trial, initialises the model, says whether its parameters are finite, waits for
queued device work when the clock stops, reports its compile time, copies its parameters for the
refined crossing, and saves and restores its part of a checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from algobench.distributed import Dist
from algobench.specs import Preset, TrialConfig
from algobench.workload import ParamKind, WorkloadSpec


class Framework(Protocol):
    name: str

    def prepare(self, config: TrialConfig, spec: WorkloadSpec, preset: Preset) -> Any: ...  # the workload
    def init_model(self, workload: Any, seed: int, dist: Dist) -> Any: ...
    def describe(self) -> dict[str, Any]: ...
    def n_params(self, model: Any) -> int: ...
    def params_finite(self, model: Any) -> bool: ...
    def sync(self, model: Any) -> None: ...  # wait for the device work that produced `model`
    def compile_time_s(self) -> float | None: ...  # None: not measured
    def snapshot(self, model: Any) -> Any: ...  # a copy of the weights (refined crossing), off the clock
    def load_snapshot(self, model: Any, snapshot: Any) -> Any: ...  # the model holding the snapshot's weights
    def save(self, path: Path, *, identity: str, progress: dict, model: Any, optimizer_state: Any,
             model_state: Any) -> None: ...
    def restore(self, found: Any, *, model: Any, optimizer_state: Any,
                model_state: Any) -> tuple[Any, Any, Any]: ...  # (model, optimizer_state, model_state)


class PresetAttributes:
    """AlgoPerf's read-only workload attributes, read from the preset (for either framework)."""

    preset: Preset
    param_types: dict[str, ParamKind]

    @property
    def step_hint(self) -> int:
        return self.preset.step_hint

    @property
    def target_metric_name(self) -> str:
        return self.preset.target.metric

    @property
    def max_allowed_runtime_sec(self) -> float:
        return self.preset.budget_s

    @property
    def eval_period_time_sec(self) -> float:
        return self.preset.eval_period_s

    @property
    def model_params_types(self) -> dict[str, ParamKind]:
        return self.param_types
