"""The framework seam: what the runner asks of a framework, and the torch answer.

The runner (clock, eval scheduling, stopping rules, results) is framework-neutral. A framework
builds the workload for a trial, initialises the model, says whether its parameters are finite,
waits for queued device work when the clock stops, reports its compile time, and saves and
restores its part of a checkpoint. `torch` is below; `jax` lives in algobench/jax_backend.py and
is imported only when asked for (jax is an optional extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

from algobench import checkpoint as ckpt
from algobench import distributed
from algobench.distributed import Dist
from algobench.errors import UserError
from algobench.specs import RunOptions, TrialConfig, apply_overrides
from algobench.workload import WORKLOADS, TorchBackend, TorchWorkload, WorkloadSpec

FRAMEWORKS = ("torch", "jax")


class Framework(Protocol):
    name: str

    def prepare(self, config: TrialConfig, spec: WorkloadSpec) -> Any: ...  # the workload, data ready
    def init_model(self, workload: Any, seed: int, dist: Dist) -> Any: ...
    def describe(self) -> dict[str, Any]: ...
    def n_params(self, model: Any) -> int: ...
    def params_finite(self, model: Any) -> bool: ...
    def sync(self, model: Any) -> None: ...  # wait for the device work that produced `model`
    def compile_time_s(self) -> float | None: ...  # None: not measured
    def save(self, path: Path, *, identity: str, progress: ckpt.Progress, model: Any, optimizer_state: Any,
             model_state: Any) -> None: ...
    def restore(self, found: ckpt.Checkpoint, *, model: Any, optimizer_state: Any,
                model_state: Any) -> tuple[Any, Any, Any]: ...  # (model, optimizer_state, model_state)


def framework_for(config: TrialConfig, dist: Dist) -> Framework:
    """The framework a trial runs in; fails fast when the workload or the machine cannot run it."""
    if config.framework == "torch":
        opts = config.options
        return TorchFramework(TorchBackend.choose(opts.device, opts.precision, opts.compile))
    spec = WORKLOADS.get(config.workload)
    if config.framework not in spec.frameworks:
        raise UserError(f"workload {spec.name} has no {config.framework} version; frameworks: "
                        f"{', '.join(spec.frameworks)}")
    if dist.active:
        raise UserError("a JAX trial is data-parallel over the local devices of one process: "
                        "start it without torchrun (one SLURM task per node)")
    try:
        from algobench.jax_backend import JaxFramework
    except ImportError as err:
        raise UserError(f"--framework jax needs the jax extra ({err}): pip install -e '.[jax]'") from None
    return JaxFramework(config.options)


class TorchFramework:
    name = "torch"

    def __init__(self, backend: TorchBackend) -> None:
        self.backend = backend

    def prepare(self, config: TrialConfig, spec: WorkloadSpec) -> TorchWorkload:
        preset = apply_overrides(spec.presets[config.size], config.options)
        return spec.build_torch(preset=preset, size=config.size, data_dir=config.data_dir, backend=self.backend)

    def init_model(self, workload: TorchWorkload, seed: int, dist: Dist) -> torch.nn.Module:
        model = distributed.wrap(workload.init_model(seed), dist, self.backend.device)
        if self.backend.compile:
            model = torch.compile(model)
        return model

    def describe(self) -> dict[str, Any]:
        return self.backend.describe()

    def n_params(self, model: torch.nn.Module) -> int:
        return sum(q.numel() for q in model.parameters())

    @torch.no_grad()
    def params_finite(self, model: torch.nn.Module) -> bool:
        params = [p.detach() for p in model.parameters()]
        if not params:
            return True
        norms = torch._foreach_norm([p.float() if p.dtype not in (torch.float32, torch.float64) else p
                                     for p in params])
        return bool(torch.isfinite(torch.stack(norms)).all())

    def sync(self, model: Any) -> None:
        self.backend.sync()

    def compile_time_s(self) -> float | None:
        return None  # torch.compile compiles lazily inside the steps; not measured apart

    def save(self, path: Path, *, identity: str, progress: ckpt.Progress, model: torch.nn.Module,
             optimizer_state: Any, model_state: Any) -> None:
        ckpt.save(path, identity=identity, progress=progress, model=model, optimizer_state=optimizer_state,
                  model_state=model_state)

    def restore(self, found: ckpt.Checkpoint, *, model: torch.nn.Module, optimizer_state: Any,
                model_state: Any) -> tuple[Any, Any, Any]:
        optimizer_state, model_state = ckpt.restore(found, model=model, optimizer_state=optimizer_state,
                                                    model_state=model_state)
        return model, optimizer_state, model_state
