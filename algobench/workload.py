"""The workload interface.

A workload is registered as a `WorkloadSpec`: framework-neutral data (name, size presets with
their targets and budgets, how to prepare its data) plus a builder for each framework backend.
The torch builder returns a `TorchWorkload`, the object a submission receives as `workload`.
Its names follow AlgoPerf's (`model_fn`, `loss_fn`, `step_hint`, `param_types`, ...) so AlgoPerf
submissions can be adapted; native submissions mostly need `loss(model, batch)`.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from algobench.registry import Registry
from algobench.specs import Preset

Batch = dict[str, torch.Tensor]
NORMS = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.modules.batchnorm._BatchNorm)


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
    build_torch: Callable[..., TorchWorkload]  # (preset=, size=, data_dir=, backend=)
    algoperf_name: str | None = None  # the AlgoPerf workload it stands for, if any
    build_jax: Callable[..., Any] | None = None  # the same, returning a jax_backend.JaxWorkload
    cost: Callable[[Preset], Any] | None = None  # (preset) -> algobench.flops.ModelCost: params and FLOPs

    @property
    def frameworks(self) -> tuple[str, ...]:
        return ("torch", "jax") if self.build_jax is not None else ("torch",)


WORKLOADS: Registry[WorkloadSpec] = Registry("workload")


@dataclass(frozen=True)
class TorchBackend:
    """Device, precision and compilation choices: the torch side of the framework seam."""

    device: torch.device
    autocast_dtype: torch.dtype | None = None  # bf16 on GPU by default
    compile: bool = False

    @classmethod
    def choose(cls, device: str = "auto", precision: str = "auto", compile: str = "auto") -> TorchBackend:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dev = torch.device(device)
        on_gpu = dev.type == "cuda"
        bf16 = precision == "bf16" or (precision == "auto" and on_gpu)
        return cls(
            device=dev,
            autocast_dtype=torch.bfloat16 if bf16 else None,
            compile=compile == "on" or (compile == "auto" and on_gpu),
        )

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def describe(self) -> dict[str, Any]:
        return {
            "device": str(self.device),
            "precision": "bf16" if self.autocast_dtype is torch.bfloat16 else "fp32",
            "compile": self.compile,
        }


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


@dataclass
class TorchWorkload(PresetAttributes):
    """Base for a workload built for torch. Subclasses define the model, data, loss and eval."""

    name: str
    size: str
    preset: Preset
    backend: TorchBackend
    data_dir: Path
    param_types: dict[str, ParamKind] = field(default_factory=dict)  # filled by init_model

    # --- the parts a workload defines ---------------------------------------------------
    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def param_kinds(self, model: nn.Module) -> dict[str, ParamKind]:
        """Kinds from module types: embeddings, norms, biases; everything else is a weight."""
        kinds: dict[str, ParamKind] = {}
        for module_name, module in model.named_modules():
            for name, _ in module.named_parameters(recurse=False):
                full = f"{module_name}.{name}" if module_name else name
                if isinstance(module, nn.Embedding):
                    kinds.setdefault(full, ParamKind.EMBEDDING)
                elif isinstance(module, NORMS):
                    kinds.setdefault(full, ParamKind.NORM)
                elif name == "bias":
                    kinds.setdefault(full, ParamKind.BIAS)
                else:
                    kinds.setdefault(full, ParamKind.WEIGHT)
        return {name: kinds[name] for name, _ in model.named_parameters()}

    def train_batches(self, *, seed: int, batch_size: int, rank: int = 0, world_size: int = 1,
                      start_step: int = 0) -> Iterator[Batch]:
        """Infinite, deterministic from (seed, step); each rank gets its slice of the global batch."""
        raise NotImplementedError

    def eval_batches(self, split: str) -> Iterator[Batch]:
        raise NotImplementedError

    def model_fn(self, params: nn.Module, batch: Batch) -> torch.Tensor:
        """Forward pass: the logits for `batch`."""
        raise NotImplementedError

    def loss_fn(self, label_batch: torch.Tensor, logits_batch: torch.Tensor,
                mask_batch: torch.Tensor | None = None, label_smoothing: float = 0.0) -> dict[str, torch.Tensor]:
        """AlgoPerf's contract: `summed`, `n_valid_examples` (a tensor) and `per_example`."""
        raise NotImplementedError

    eval_splits: tuple[str, ...] = ("val", "test")

    # --- shared machinery ----------------------------------------------------------------
    def init_model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        model = self.build_model().to(self.backend.device)
        self.param_types = self.param_kinds(model)
        return model

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Mean training loss of `batch` under the workload's precision: what update steps call."""
        with self.backend.autocast():
            logits = self.model_fn(model, batch)
            out = self.loss_fn(batch["targets"], logits, batch.get("mask"))
        return out["summed"] / out["n_valid_examples"]

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """Mean loss (and whatever `eval_metrics` adds) over the fixed `split` set."""
        was_training = model.training
        model.eval()
        total = torch.zeros((), device=self.backend.device, dtype=torch.float64)
        count = torch.zeros((), device=self.backend.device, dtype=torch.float64)
        for batch in self.eval_batches(split):
            with self.backend.autocast():
                out = self.loss_fn(batch["targets"], self.model_fn(model, batch), batch.get("mask"))
            total += out["summed"].double()
            count += out["n_valid_examples"].double()
        model.train(was_training)
        return {"loss": (total / count).item()}



def param_groups(model: nn.Module, workload: TorchWorkload, *, weight_decay: float,
                 decay_kinds: tuple[ParamKind, ...] = (ParamKind.WEIGHT, ParamKind.EMBEDDING)) -> list[dict]:
    """Two optimizer groups: decayed (`decay_kinds`) and not decayed (the rest)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        kind = workload.param_types.get(_unwrapped(name), ParamKind.WEIGHT)
        (decay if kind in decay_kinds else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def _unwrapped(name: str) -> str:
    """Parameter name without the prefixes torch.compile and DDP add."""
    for prefix in ("_orig_mod.", "module."):
        while name.startswith(prefix):
            name = name[len(prefix):]
    return name
