"""Model size, training FLOPs and model FLOPs utilization (MFU).

A workload's `cost(preset)` gives a `ModelCost`: its parameter count (the preset's model built
on the meta device, so exact and free) and its training FLOPs per example, counted analytically
in each workload's `cost.py` with the usual accounting: 2 FLOPs per multiply-add of every matmul
and convolution in the forward pass (attention's QK^T and AV included, over the full T x T, as
nanoGPT / PaLM count them), and training = 3 x forward (the backward pass costs twice the
forward). Norms, activations, softmax, embedding lookups and the optimizer are not counted.

MFU = achieved FLOP/s / the device's dense peak at the trial's precision (`PEAK_FLOPS`); None
where the peak is unknown (a CPU, an unlisted GPU).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where a model is built: `list workloads` starts without it
    import torch

Precision = str  # "bf16", "tf32" or "fp32": what the matmuls run in


@dataclass(frozen=True)
class ModelCost:
    n_params: int
    train_flops_per_example: float  # forward + backward, analytic
    example: str  # what one example is, e.g. "one sequence of 1,024 tokens"


def n_params(build: Callable[[], torch.nn.Module]) -> int:
    """Parameters of the model `build()` makes, built on the meta device (no memory, no init)."""
    return sum(p.numel() for p in on_meta(build).parameters())


# Tensor methods that fill a tensor (torch.nn.init's functions are skipped whole): on a meta tensor
# they compute nothing, yet each runs torch's Python reference (2 s for a process's first `normal_`).
_INIT_METHODS = ("normal_", "uniform_", "fill_", "zero_", "copy_", "bernoulli_", "exponential_",
                 "geometric_", "log_normal_", "cauchy_", "random_")


def on_meta(build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """The model `build()` makes, on the meta device: shapes and names only, with no memory and
    the initialisers skipped (they would only burn time on tensors that hold no values)."""
    import torch
    from torch.overrides import TorchFunctionMode

    skipped = {getattr(torch.Tensor, name) for name in _INIT_METHODS}

    class SkipInit(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            target = args[0] if args else kwargs.get("tensor")  # torch.nn.init's pass it by name
            initialiser = func in skipped or getattr(func, "__module__", None) == "torch.nn.init"
            if initialiser and isinstance(target, torch.Tensor) and target.is_meta:
                return target
            return func(*args, **kwargs)

    with torch.device("meta"), SkipInit():
        return build()


# --- dense peak throughput per GPU model and precision, FLOP/s (no structured sparsity) -------
# Vendor datasheets; the sparsity figures they headline are twice these.
# H100 SXM / H100 PCIe: NVIDIA H100 Tensor Core GPU datasheet (2023): BF16 1,979 / 1,513 TFLOPS
#   and TF32 989 / 756 with sparsity; FP32 67 / 51.
# H200 (SXM) / H200 NVL: NVIDIA H200 datasheet (2024): BF16 1,979 / 1,671, TF32 989 / 835 with
#   sparsity; FP32 67 / 60.
# A100 (SXM and PCIe): NVIDIA A100 datasheet: BF16 312, TF32 156 (dense), FP32 19.5.
# V100 SXM2 / PCIe: NVIDIA V100 datasheet: FP32 15.7 / 14; no BF16 or TF32 tensor cores (its
#   125 / 112 TFLOPS are FP16): TF32 asked for runs as FP32, BF16 has no tensor-core peak (None).
# L40S: NVIDIA L40S datasheet: BF16 362.05 dense (733 with sparsity), TF32 183 (366); FP32 91.6.
T = 1e12
PEAK_FLOPS: dict[str, dict[Precision, float | None]] = {
    "H100 SXM": {"bf16": 989.5 * T, "tf32": 494.5 * T, "fp32": 67 * T},
    "H100 PCIe": {"bf16": 756.5 * T, "tf32": 378 * T, "fp32": 51 * T},
    "H200": {"bf16": 989.5 * T, "tf32": 494.5 * T, "fp32": 67 * T},
    "H200 NVL": {"bf16": 835.5 * T, "tf32": 417.5 * T, "fp32": 60 * T},
    "A100": {"bf16": 312 * T, "tf32": 156 * T, "fp32": 19.5 * T},
    "V100 SXM2": {"bf16": None, "tf32": 15.7 * T, "fp32": 15.7 * T},
    "V100 PCIe": {"bf16": None, "tf32": 14 * T, "fp32": 14 * T},
    "L40S": {"bf16": 362.05 * T, "tf32": 183 * T, "fp32": 91.6 * T},
}


def gpu_model(device_name: str | None) -> str | None:
    """The `PEAK_FLOPS` key of a `torch.cuda.get_device_name()` string, or None when unlisted.
    ('NVIDIA H100 80GB HBM3' -> 'H100 SXM', 'NVIDIA A100-SXM4-80GB' -> 'A100', ...)"""
    name = (device_name or "").upper().replace("-", " ")
    if "H200" in name:
        return "H200 NVL" if "NVL" in name else "H200"
    if "H100" in name:
        if "NVL" in name:
            return None  # H100 NVL: not in the table
        return "H100 PCIe" if "PCIE" in name else "H100 SXM"
    if "A100" in name:
        return "A100"
    if "V100" in name:
        return "V100 PCIe" if "PCIE" in name else "V100 SXM2"
    if "L40S" in name:
        return "L40S"
    return None


def peak_flops(device_name: str | None, precision: Precision) -> float | None:
    model = gpu_model(device_name)
    return None if model is None else PEAK_FLOPS[model].get(precision)


def matmul_precision(backend_precision: str, device_type: str) -> Precision:
    """What the matmuls run in: bf16 under bf16 autocast; on a GPU, fp32 matmuls run as TF32
    unless TF32 was turned off (`--precision fp32`)."""
    if backend_precision == "bf16":
        return "bf16"
    import torch

    if device_type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "fp32"


def trial_flops(*, train_flops_per_example: float | None, batch_size: int, steps: int, submission_time_s: float,
                device_name: str | None, precision: Precision, n_devices: int = 1) -> dict[str, float | None]:
    """The summary's FLOPs fields: per step (the global batch), achieved over submission time
    (all devices together), and MFU against `n_devices` x the peak (None when it is unknown)."""
    if train_flops_per_example is None:
        return {"train_flops_per_step": None, "achieved_flops_per_s": None, "mfu": None}
    per_step = train_flops_per_example * batch_size
    achieved = per_step * steps / submission_time_s if submission_time_s > 0 and steps else None
    peak = peak_flops(device_name, precision)
    mfu = achieved / (peak * n_devices) if achieved is not None and peak else None
    return {"train_flops_per_step": per_step, "achieved_flops_per_s": achieved, "mfu": mfu}


def workload_costs(spec: Any) -> dict[str, dict[str, Any]]:
    """Per size of a `WorkloadSpec`: {"n_params", "train_flops_per_example", "example"} (None
    values when the workload declares no cost). For `list workloads --format json`."""
    out: dict[str, dict[str, Any]] = {}
    for size, preset in spec.presets.items():
        cost = spec.cost(preset) if spec.cost is not None else None
        out[size] = {"n_params": cost.n_params if cost else None,
                     "train_flops_per_example": round(cost.train_flops_per_example) if cost else None,
                     "example": cost.example if cost else None}
    return out
