"""The JAX side of the framework seam: devices and precision, the workload base, and the runner's
hooks (init, evaluation, device sync, snapshots, checkpoints). Optax submissions are a form of
their own (algobench/forms/optax.py).

Models are plain JAX, not flax: a model is a pure function of a flat dict of arrays named and
shaped exactly like the torch model's parameters (`"h.0.attn.c_attn.weight": (3C, C)`). So
weights convert between the frameworks by name with no reshaping (the parity tests and the
checkpoints rely on it), parameter kinds and weight-decay masks come from the torch model's names
(`ParamKind`), and the extra stays small (jax and optax only).

Data: a JAX workload draws its batches from the torch workload's own pipeline built on the CPU
(same token shards, same images, same (seed, step) order) and hands them to the devices as
numpy arrays, sharded along the batch over every local device (`jax.sharding`, data parallel;
the parameters are replicated). Precision: `bf16` computes matmuls and attention in bfloat16
with float32 parameters, norms and losses, as torch's autocast does; `auto` is bf16 on an
accelerator and fp32 on the CPU. Compilation: the train step is compiled ahead of time on the
first step, on the clock (AlgoPerf's rule); its time is also reported as `compile_time_s`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from algobench import checkpoint as ckpt
from algobench.distributed import Dist
from algobench.errors import UserError
from algobench.flops import on_meta
from algobench.frameworks.base import PresetAttributes
from algobench.frameworks.torch import TorchBackend, TorchWorkload
from algobench.specs import Preset, RunOptions, TrialConfig
from algobench.workload import ParamKind, WorkloadSpec

Params = dict[str, jax.Array]
Batch = dict[str, jax.Array]
DECAYED = (ParamKind.WEIGHT, ParamKind.EMBEDDING)


# --- devices and precision ---------------------------------------------------------------------

@dataclass
class JaxBackend:
    """The local devices (one mesh axis, `data`) and the compute dtype (None: float32)."""

    devices: tuple[Any, ...]
    compute_dtype: Any = None
    compile_time_s: float = 0.0  # train-step compilation so far (on the clock)

    @classmethod
    def choose(cls, device: str = "auto", precision: str = "auto") -> JaxBackend:
        platform = {"auto": jax.default_backend(), "cpu": "cpu", "cuda": "gpu"}[device]
        try:
            devices = tuple(jax.local_devices(backend=platform))
        except RuntimeError:
            raise UserError(f"--device {device}: jax sees no {platform} device (jax {jax.__version__}, "
                            f"devices: {jax.devices()})") from None
        bf16 = precision == "bf16" or (precision == "auto" and platform != "cpu")
        return cls(devices=devices, compute_dtype=jnp.bfloat16 if bf16 else None)

    @cached_property
    def mesh(self) -> Mesh:
        return Mesh(np.array(self.devices), ("data",))

    @cached_property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    @cached_property
    def batch_sharded(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec("data"))

    def replicate(self, tree: Any) -> Any:
        return jax.device_put(tree, self.replicated)

    def put_batch(self, batch: Mapping[str, Any]) -> Batch:
        """Host arrays (numpy or CPU torch) onto the devices, split along the batch axis when it
        divides evenly (else replicated: a last, smaller eval batch)."""
        out = {}
        for key, value in batch.items():
            array = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            if array.dtype == np.int64:
                array = array.astype(np.int32)  # jax's default integer width
            split = array.ndim and array.shape[0] % len(self.devices) == 0
            out[key] = jax.device_put(array, self.batch_sharded if split else self.replicated)
        return out

    def describe(self) -> dict[str, Any]:
        return {"framework": "jax", "jax": jax.__version__, "device": f"{self.devices[0].platform} x{len(self.devices)}",
                "precision": "bf16" if self.compute_dtype == jnp.bfloat16 else "fp32", "compile": "jit"}


# --- the workload base ---------------------------------------------------------------------------

@dataclass
class JaxWorkload(PresetAttributes):
    """Base for a workload built for JAX. Subclasses define `init_params`, `model_fn` and, when
    they report more than the loss, `eval_sums`. `data` is the torch workload on the CPU: its
    data pipeline and its parameter kinds are shared, not rewritten."""

    name: str
    size: str
    preset: Preset
    backend: JaxBackend
    data: TorchWorkload
    param_types: dict[str, ParamKind] = field(default_factory=dict)  # filled by init_model

    # --- the parts a workload defines ---------------------------------------------------
    def init_params(self, key: jax.Array) -> Params:
        raise NotImplementedError

    def model_fn(self, params: Params, batch: Batch) -> jax.Array:
        """Forward pass under the backend's compute dtype: the logits for `batch`."""
        raise NotImplementedError

    def loss_fn(self, label_batch: jax.Array, logits_batch: jax.Array, mask_batch: jax.Array | None = None,
                label_smoothing: float = 0.0) -> dict[str, jax.Array]:
        """AlgoPerf's contract: `summed`, `n_valid_examples` and `per_example` (float32)."""
        if label_smoothing:
            raise NotImplementedError("label smoothing")
        per_example = cross_entropy(logits_batch, label_batch)
        if mask_batch is not None:
            per_example, n = per_example * mask_batch, mask_batch.sum()
        else:
            n = jnp.asarray(per_example.size, jnp.float32)
        return {"summed": per_example.sum(), "n_valid_examples": n, "per_example": per_example}

    def eval_sums(self, params: Params, batch: Batch) -> dict[str, jax.Array]:
        """Sums over `batch` of each metric, and `count`; `evaluate` divides."""
        out = self.loss_fn(batch["targets"], self.model_fn(params, batch), batch.get("mask"))
        return {"loss": out["summed"], "count": out["n_valid_examples"]}

    @property
    def eval_splits(self) -> tuple[str, ...]:
        return self.data.eval_splits

    # --- shared machinery ----------------------------------------------------------------
    def init_model(self, seed: int) -> Params:
        """Parameters from `seed`, replicated over the devices; kinds from the torch model's names."""
        self.param_types = self.data.param_kinds(on_meta(self.data.build_model))  # names and kinds only
        self.data.param_types = self.param_types
        params = self.init_params(jax.random.key(seed))
        if set(params) != set(self.param_types):
            raise ValueError(f"{self.name}: JAX and torch parameter names differ: "
                             f"{sorted(set(params) ^ set(self.param_types))[:5]}")
        return self.backend.replicate(params)

    def loss(self, params: Params, batch: Batch) -> jax.Array:
        """Mean training loss of `batch`: what train steps differentiate."""
        out = self.loss_fn(batch["targets"], self.model_fn(params, batch), batch.get("mask"))
        return out["summed"] / out["n_valid_examples"]

    def train_batches(self, *, seed: int, batch_size: int, rank: int = 0, world_size: int = 1,
                      start_step: int = 0) -> Iterator[Batch]:
        """The torch pipeline's batches, on the devices, split over them. (One process: the
        global batch; `rank`/`world_size` are torch's multi-process notions.)"""
        if batch_size % len(self.backend.devices):
            raise UserError(f"batch size {batch_size} is not divisible by the {len(self.backend.devices)} devices")
        for batch in self.data.train_batches(seed=seed, batch_size=batch_size, rank=rank, world_size=world_size,
                                             start_step=start_step):
            yield self.backend.put_batch(batch)

    def eval_batches(self, split: str) -> Iterator[Batch]:
        for batch in self.data.eval_batches(split):
            yield self.backend.put_batch(batch)

    @cached_property
    def _eval_sums(self) -> Callable:
        return jax.jit(self.eval_sums)

    def evaluate(self, params: Params, split: str) -> dict[str, float]:
        """Mean of each metric of `eval_sums` over the fixed `split` set; one host sync."""
        sums = jax.device_get([self._eval_sums(params, batch) for batch in self.eval_batches(split)])
        totals = {key: float(np.sum([np.float64(s[key]) for s in sums])) for key in sums[0]}
        count = totals.pop("count")
        return {key: value / count for key, value in totals.items()}

    @property
    def decay_mask(self) -> dict[str, bool]:
        """True for the parameters weight decay applies to (weights and embeddings)."""
        return {name: kind in DECAYED for name, kind in self.param_types.items()}



def torch_data(build_torch: Callable[..., TorchWorkload], *, preset: Preset, size: str,
               data_dir: Path) -> TorchWorkload:
    """The torch workload whose data pipeline a JAX workload shares: on the CPU, float32."""
    return build_torch(preset=preset, size=size, data_dir=data_dir, backend=TorchBackend.choose("cpu", "fp32", "off"))


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example cross-entropy in float32 (as torch's on `logits.float()`)."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(logp, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]


def from_torch(model: torch.nn.Module) -> Params:
    """A torch model's parameters as the JAX parameter dict (same names, same layouts)."""
    return {name: jnp.asarray(p.detach().cpu().float().numpy()) for name, p in model.named_parameters()}


# --- the runner's hooks ----------------------------------------------------------------------------

@jax.jit
def _all_finite(params: Params) -> jax.Array:
    return jnp.all(jnp.array([jnp.isfinite(p).all() for p in jax.tree.leaves(params)]))


class JaxFramework:
    """What the runner asks of a framework (algobench/frameworks/base.py), for JAX."""

    name = "jax"

    def __init__(self, options: RunOptions) -> None:
        self.backend = JaxBackend.choose(options.device, options.precision)

    def prepare(self, config: TrialConfig, spec: WorkloadSpec, preset: Preset) -> JaxWorkload:
        return spec.build_jax(preset=preset, size=config.size, data_dir=config.data_dir, backend=self.backend)

    def init_model(self, workload: JaxWorkload, seed: int, dist: Dist) -> Params:
        return workload.init_model(seed)

    def describe(self) -> dict[str, Any]:
        return self.backend.describe()

    def n_params(self, params: Params) -> int:
        return sum(int(np.prod(p.shape)) for p in params.values())

    def params_finite(self, params: Params) -> bool:
        return bool(_all_finite(params))

    def sync(self, params: Params) -> None:
        jax.block_until_ready(params)

    def compile_time_s(self) -> float | None:
        return self.backend.compile_time_s

    def snapshot(self, params: Params) -> Params:
        """A copy (the train step donates its input buffers, so the arrays themselves won't do)."""
        return jax.tree.map(jnp.copy, params)

    def load_snapshot(self, params: Params, snapshot: Params) -> Params:
        return jax.tree.map(jnp.copy, snapshot)

    def save(self, path: Path, *, identity: str, progress: dict, model: Params, optimizer_state: Any,
             model_state: Any) -> None:
        weights = {name: torch.from_numpy(np.array(p)) for name, p in model.items()}  # a torch state dict
        ckpt.save(path, identity=identity, progress=progress, model=weights, optimizer_state=optimizer_state,
                  model_state=model_state)

    def restore(self, found: ckpt.Checkpoint, *, model: Params, optimizer_state: Any,
                model_state: Any) -> tuple[Any, Any, Any]:
        params = self.backend.replicate({name: found.model[name].numpy() for name in model})
        optimizer_state = ckpt.restore_into(optimizer_state, found.optimizer_state)
        model_state = ckpt.restore_into(model_state, found.model_state)
        ckpt.set_rng_states(found.rng)
        return params, optimizer_state, model_state
