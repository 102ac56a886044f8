"""The torch side of the framework seam: device and precision choices, the workload base a torch
submission receives, and the runner's hooks (init, finiteness, device sync, snapshots, checkpoints).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from algobench import checkpoint as ckpt
from algobench import distributed
from algobench.distributed import Dist
from algobench.errors import UserError
from algobench.frameworks.base import PresetAttributes
from algobench.specs import Preset, TrialConfig
from algobench.workload import LossType, ParamKind, WorkloadSpec

Batch = dict[str, torch.Tensor]
NORMS = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.modules.batchnorm._BatchNorm)


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
        if device == "cuda" and not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else "a CUDA build that sees no GPU"
            raise UserError(f"--device cuda: this torch ({torch.__version__}) is {build}; use --device cpu "
                            "or install a CUDA build of torch")
        dev = torch.device(device)
        on_gpu = dev.type == "cuda"
        bf16 = precision == "bf16" or (precision == "auto" and on_gpu)
        if on_gpu:  # TF32 matmuls unless fp32 is asked for (AlgoPerf's default since 2026)
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision != "fp32"
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


@dataclass
class TorchWorkload(PresetAttributes):
    """Base for a workload built for torch. Subclasses define the model, data, loss and eval."""

    name: str
    size: str
    preset: Preset
    backend: TorchBackend
    data_dir: Path
    param_types: dict[str, ParamKind] = field(default_factory=dict)  # filled by init_model
    loss_type: LossType = "softmax_cross_entropy"  # stamped from the spec when built (WorkloadSpec)
    algoperf_name: str | None = None  # likewise

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

    def eval_sums(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """Sums over `batch` of each metric, and `count` (0-d tensors, on the device): `evaluate`
        adds them up over the split and `finalize` turns the totals into metrics."""
        with self.backend.autocast():
            out = self.loss_fn(batch["targets"], self.model_fn(model, batch), batch.get("mask"))
        return {"loss": out["summed"], "count": out["n_valid_examples"]}

    def finalize(self, totals: dict[str, float]) -> dict[str, float]:
        """Metrics from the split's totals: each sum over `count` (a mean per example)."""
        count = totals.pop("count")
        return {key: value / count for key, value in totals.items()}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """`finalize` of the `eval_sums` totals over the fixed `split` set: one host sync."""
        was_training = model.training
        model.eval()
        names, totals = None, None
        for batch in self.eval_batches(split):
            sums = self.eval_sums(model, batch)
            stacked = torch.stack([torch.as_tensor(v, device=self.backend.device).double() for v in sums.values()])
            names, totals = list(sums), stacked if totals is None else totals + stacked
        model.train(was_training)
        if totals is None:
            raise ValueError(f"{self.name}: the {split} split has no examples")
        return self.finalize(dict(zip(names, totals.tolist())))


class TorchFramework:
    name = "torch"

    def __init__(self, backend: TorchBackend) -> None:
        self.backend = backend

    def prepare(self, config: TrialConfig, spec: WorkloadSpec, preset: Preset) -> TorchWorkload:
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

    @torch.no_grad()
    def snapshot(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """A copy of the weights and buffers (on the device; on the CPU for models over 1 GiB)."""
        state = ckpt.unwrap(model).state_dict()
        big = sum(t.numel() * t.element_size() for t in state.values()) > 2**30
        return {k: (v.detach().to("cpu", copy=True) if big else v.detach().clone()) for k, v in state.items()}

    @torch.no_grad()
    def load_snapshot(self, model: torch.nn.Module, snapshot: dict[str, torch.Tensor]) -> torch.nn.Module:
        ckpt.unwrap(model).load_state_dict(snapshot)
        return model

    def save(self, path: Path, *, identity: str, progress: dict, model: torch.nn.Module,
             optimizer_state: Any, model_state: Any) -> None:
        ckpt.save(path, identity=identity, progress=progress, model=model, optimizer_state=optimizer_state,
                  model_state=model_state)

    def restore(self, found: ckpt.Checkpoint, *, model: torch.nn.Module, optimizer_state: Any,
                model_state: Any) -> tuple[Any, Any, Any]:
        optimizer_state, model_state = ckpt.restore(found, model=model, optimizer_state=optimizer_state,
                                                    model_state=model_state)
        return model, optimizer_state, model_state
