"""What a workload is, independent of any framework.

A workload is a `WorkloadSpec`: its name, size presets with their targets and budgets, its loss
type, how its data is prepared, and a builder for each framework (torch always, JAX for some).
Each framework's workload base, the object a submission receives as `workload`, lives with its
framework (algobench/frameworks/). The registry of workloads is `workloads.WORKLOADS`: the
`workloads` package lists its workloads by name and imports each one on first use.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock

from algobench.errors import UserError
from algobench.specs import Preset, TrialConfig

# AlgoPerf's `LossType` names, lower case: what `update_params` receives as `loss_type`.
LossType = Literal["softmax_cross_entropy", "sigmoid_cross_entropy", "mean_squared_error", "mean_absolute_error"]


class ParamKind(str, enum.Enum):
    """What a parameter is, so submissions can mask weight decay."""

    WEIGHT = "weight"
    BIAS = "bias"
    NORM = "norm"
    EMBEDDING = "embedding"


@dataclass(frozen=True)
class DataSpec:
    """How a workload's data is prepared and found on disk."""

    is_ready: Callable[[str, Path], bool]  # (size, data_dir) -> ready?
    prepare: Callable[..., Path]  # (size, data_dir, **options) -> folder written
    auto_prepare_sizes: tuple[str, ...] = ("smoke",)  # built offline in seconds: run may do it


@dataclass(frozen=True)
class WorkloadSpec:
    name: str
    description: str
    presets: Mapping[str, Preset]
    data: DataSpec
    build_torch: Callable[..., Any]  # (preset=, size=, data_dir=, backend=) -> frameworks.torch.TorchWorkload
    loss_type: LossType = "softmax_cross_entropy"
    algoperf_name: str | None = None  # the AlgoPerf workload it stands for, if any
    build_jax: Callable[..., Any] | None = None  # the same, returning a frameworks.jax.JaxWorkload
    cost: Callable[[Preset], Any] | None = None  # (preset) -> algobench.flops.ModelCost: params and FLOPs

    def __post_init__(self) -> None:
        # Every built workload carries its spec's loss type and AlgoPerf name, however it is built.
        for field in ("build_torch", "build_jax"):
            build = getattr(self, field)
            if build is not None:
                object.__setattr__(self, field, self._stamped(build))

    def _stamped(self, build: Callable[..., Any]) -> Callable[..., Any]:
        if getattr(build, "stamped_by", None) is self.name:
            return build

        def stamped(**kwargs: Any) -> Any:
            workload = build(**kwargs)
            workload.loss_type, workload.algoperf_name = self.loss_type, self.algoperf_name
            return workload

        stamped.stamped_by = self.name  # type: ignore[attr-defined]
        return stamped

    @property
    def frameworks(self) -> tuple[str, ...]:
        return ("torch", "jax") if self.build_jax is not None else ("torch",)

    def preset(self, size: str) -> Preset:
        if size not in self.presets:
            raise UserError(f"workload {self.name} has no size '{size}'; sizes: {', '.join(self.presets)}")
        return self.presets[size]


def ensure_data(spec: WorkloadSpec, size: str, data_dir: Path) -> None:
    """Make sure the workload's data for `size` is in `data_dir`: prepared here when that takes
    seconds (the smoke size), else a UserError naming the command that prepares it."""
    spec.preset(size)
    if spec.data.is_ready(size, data_dir):
        return
    if size not in spec.data.auto_prepare_sizes:
        raise UserError(f"data for {spec.name} ({size}) is not prepared in {data_dir}; run: "
                        f"algobench data prepare {spec.name} --size {size} --data-dir {data_dir}")
    # Processes that start together (tune --jobs N, an array job, test workers) prepare it once:
    # the first one under the lock, the others find it ready when they get the lock.
    data_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(data_dir / f".prepare-{size}.lock"):
        if not spec.data.is_ready(size, data_dir):
            spec.data.prepare(size, data_dir)


def ensure_trial_data(spec: WorkloadSpec, config: TrialConfig) -> None:
    ensure_data(spec, config.size, config.data_dir)


def param_groups(model: Any, workload: Any, *, weight_decay: float,
                 decay_kinds: tuple[ParamKind, ...] = (ParamKind.WEIGHT, ParamKind.EMBEDDING)) -> list[dict]:
    """Two optimizer groups of a torch model: decayed (`decay_kinds`) and not decayed (the rest),
    from `workload.param_types`."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        kind = workload.param_types.get(unwrapped_name(name), ParamKind.WEIGHT)
        (decay if kind in decay_kinds else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def unwrapped_name(name: str) -> str:
    """Parameter name without the prefixes torch.compile and DDP add."""
    for prefix in ("_orig_mod.", "module."):
        while name.startswith(prefix):
            name = name[len(prefix):]
    return name
