"""SLURM cluster profiles: YAML files in slurm/profiles/ (or $ALGOBENCH_CLUSTERS_DIR), chosen
with `--cluster NAME` and overridden with `--slurm KEY=VALUE`; and the executors a trial can go to."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from algobench.errors import UserError, closest, unknown
from algobench.specs import Frozen


EXECUTORS = ("local", "slurm", "debug")
PROFILES_ENV = "ALGOBENCH_CLUSTERS_DIR"
REPO_PROFILES = Path(__file__).resolve().parents[2] / "slurm" / "profiles"


class ClusterProfile(Frozen):
    """What a SLURM job asks for. Units are in the names; `sbatch` passes any other option on."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    nodes: int = Field(default=1, gt=0)
    tasks_per_node: int = Field(default=1, gt=0)  # processes per node: one per GPU for DDP
    gpus_per_node: int = Field(default=0, ge=0)
    cpus_per_task: int = Field(default=1, gt=0)
    mem_gb: float | None = Field(default=None, gt=0)
    time_limit_min: int = Field(default=60, gt=0)
    constraint: str | None = None
    setup: tuple[str, ...] = ()  # shell lines before the job starts, e.g. "module load cuda/12.4"
    signal_delay_s: int = Field(default=90, gt=0)  # USR2 this long before the time limit
    max_requeues: int = Field(default=3, ge=0)  # submitit's max_num_timeout
    array_parallelism: int = Field(default=8, gt=0)  # array tasks running at once
    sbatch: dict[str, Any] = Field(default_factory=dict)  # e.g. {"exclude": "node17", "mail-type": "END"}

    def submitit_parameters(self) -> dict[str, Any]:
        """The parameters of submitit's SlurmExecutor."""
        params: dict[str, Any] = {
            "nodes": self.nodes, "ntasks_per_node": self.tasks_per_node, "cpus_per_task": self.cpus_per_task,
            "time": self.time_limit_min, "signal_delay_s": self.signal_delay_s,
            "array_parallelism": self.array_parallelism, "setup": list(self.setup),
            "additional_parameters": dict(self.sbatch),
        }
        optional = {"partition": self.partition, "account": self.account, "qos": self.qos,
                    "constraint": self.constraint, "gpus_per_node": self.gpus_per_node or None,
                    "mem": f"{self.mem_gb:g}GB" if self.mem_gb else None}
        return params | {k: v for k, v in optional.items() if v is not None}


# --- cluster profiles ------------------------------------------------------------------------------

def profile_dirs() -> list[Path]:
    extra = os.environ.get(PROFILES_ENV)
    return ([Path(extra)] if extra else []) + [REPO_PROFILES]


def profile_names() -> list[str]:
    return sorted({p.stem for d in profile_dirs() if d.is_dir() for p in d.glob("*.yaml")})


def load_profile(name: str, overrides: Sequence[str] = ()) -> ClusterProfile:
    """Profile NAME (or a YAML file), with `key=value` overrides from the command line."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else next(
        (d / f"{name}.yaml" for d in profile_dirs() if (d / f"{name}.yaml").is_file()), None)
    if path is None:
        raise unknown("cluster profile", name, profile_names())
    if not path.is_file():
        raise UserError(f"cluster profile file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"cluster profile {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"cluster profile {path} must hold a mapping of option: value")
    _check_keys(data, str(path))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--slurm '{item}': write KEY=VALUE, e.g. --slurm partition=gpu")
        key = key.strip().replace("-", "_")
        _check_keys({key: None}, "--slurm")
        data[key] = yaml.safe_load(value)
    return _validated_profile(data, str(path))


def _check_keys(data: dict, source: str) -> None:
    fields = ClusterProfile.model_fields
    for key in data:
        if key not in fields:
            raise UserError(f"{source}: '{key}' is not a cluster option; did you mean: "
                            f"{', '.join(closest(key, fields))}?")


def _validated_profile(data: dict, source: str) -> ClusterProfile:
    try:
        return ClusterProfile(**data)
    except ValidationError as err:
        first = err.errors()[0]
        raise UserError(f"{source}: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
