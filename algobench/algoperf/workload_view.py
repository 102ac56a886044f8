"""AlgoPerf's view of an algobench workload: its Workload API, and its names for each workload.

AlgoPerf's workloads name some things otherwise than their counterparts here; the view
translates both ways, per AlgoPerf workload family (`FAMILIES`):
- batches: the label mask is AlgoPerf's `weights` (here `mask`); ogbg's graph sits under
  `inputs` (`{'inputs': graph, 'targets', 'weights'}`); finewebedu_lm's train batches carry
  `'weights': None`; imagenet_vit's are `{'inputs', 'targets'}` as here;
- metrics: ogbg's `mean_average_precision` (here `map`); finewebedu_lm adds `ppl` (exp of the
  loss), its target metric;
- eval results: AlgoPerf's `<split>/num_examples` besides the metrics.

The view also keeps the step's training loss: the first `loss_fn` result of each
`update_params` call, read (a host sync) only when the runner logs it, off the clock.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from algobench.algoperf import pytorch_utils
from algobench.algoperf.spec import ForwardPassMode, LossType, ParameterType, ShapeTuple
from algobench.forms.base import ALGOPERF_SPLIT
from algobench.workload import ParamKind

TorchWorkload = Any  # algobench.frameworks.torch.TorchWorkload (a layer above this one)
Batch = dict[str, Any]
NATIVE_SPLIT = {algoperf: ours for ours, algoperf in ALGOPERF_SPLIT.items()}  # 'validation' -> 'val'


@dataclass(frozen=True)
class Family:
    """How one AlgoPerf workload family names what its counterpart here calls otherwise."""

    metrics: Mapping[str, str] = field(default_factory=dict)  # metric here -> AlgoPerf's name
    derived: Mapping[str, tuple[str, Callable[[float], float]]] = field(default_factory=dict)  # name: (from, fn)
    target: tuple[str, Callable[[float], float]] | None = None  # AlgoPerf's target metric, from ours
    graph_inputs: bool = False  # the model's inputs (all keys but targets and mask) under 'inputs'
    weights_always: bool = False  # batches carry 'weights' even when there is no mask (None)

    def to_algoperf(self, batch: Batch) -> Batch:
        out = {k: v for k, v in batch.items() if k != "mask"}
        if "mask" in batch or self.weights_always:
            out["weights"] = batch.get("mask")
        if self.graph_inputs:
            out = {"inputs": {k: v for k, v in out.items() if k not in ("targets", "weights")},
                   "targets": out["targets"], "weights": out.get("weights")}
        return out

    def to_native(self, batch: Batch) -> Batch:
        if self.graph_inputs and isinstance(batch.get("inputs"), Mapping):
            batch = {**batch["inputs"], **{k: v for k, v in batch.items() if k != "inputs"}}
        out = {k: v for k, v in batch.items() if k != "weights"}
        if batch.get("weights") is not None:
            out["mask"] = batch["weights"]
        return out

    def metric_name(self, name: str) -> str:
        return self.metrics.get(name, name)

    def metrics_view(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """One split's metrics under AlgoPerf's names, derived ones added."""
        out = {self.metric_name(k): v for k, v in metrics.items()}
        for name, (source, fn) in self.derived.items():
            if source in metrics:
                out[name] = _safe(fn, metrics[source])
        return out


FAMILIES: dict[str, Family] = {
    "finewebedu_lm": Family(derived={"ppl": ("loss", math.exp)}, target=("ppl", math.exp), weights_always=True),
    "imagenet_vit": Family(),
    "ogbg": Family(metrics={"map": "mean_average_precision"}, graph_inputs=True),
}
NATIVE = Family()  # a workload with no AlgoPerf counterpart: its own names


def base_name(algoperf_name: str) -> str | None:
    """AlgoPerf's `get_base_workload_name`: the family a variant belongs to (ogbg_gelu -> ogbg)."""
    for name in sorted(FAMILIES, key=len, reverse=True):
        if name in algoperf_name:
            return name
    return None


def family(algoperf_name: str | None) -> Family:
    base = base_name(algoperf_name) if algoperf_name else None
    return FAMILIES[base] if base else NATIVE


def _safe(fn: Callable[[float], float], value: float) -> float:
    try:
        return fn(value)
    except OverflowError:
        return math.inf


class StepLoss:
    """The step's mean training loss, `summed / n_valid_examples`, kept on the device until
    `float()` reads it (the runner does, off the clock, when it logs)."""

    def __init__(self, summed: torch.Tensor, n_valid: Any) -> None:
        self.summed, self.n_valid = summed, n_valid

    def __float__(self) -> float:
        return float(self.summed) / float(self.n_valid)


class AlgoPerfWorkload:
    """An algobench TorchWorkload seen through AlgoPerf's Workload API."""

    def __init__(self, native: TorchWorkload) -> None:
        self._native = native
        self.family = family(native.algoperf_name)
        self.metrics_logger = None
        self.loss_type = LossType[native.loss_type.upper()]  # the workload's own (gnn: sigmoid)
        self.step_loss: StepLoss | None = None
        self._capture = False
        self._num_examples: dict[str, int] = {}
        self._shapes: dict[str, ShapeTuple] = {}

    def __getattr__(self, name: str) -> Any:  # step_hint, max_allowed_runtime_sec, ...
        return getattr(self._native, name)

    # --- targets, under AlgoPerf's metric names --------------------------------------------
    @property
    def _target(self):
        return self._native.preset.target

    @property
    def target_metric_name(self) -> str:
        """AlgoPerf's name, without the split: 'loss', 'accuracy', 'mean_average_precision', 'ppl'."""
        if self.family.target is not None:
            return self.family.target[0]
        return self.family.metric_name(self._target.metric.split("_", 1)[1])

    @property
    def validation_target_value(self) -> float:
        if self.family.target is not None:
            return self.family.target[1](self._target.value)
        return self._target.value

    def has_reached_validation_target(self, eval_result: Mapping[str, float]) -> bool:
        native = self._target.metric.split("_", 1)[1]
        return self._target.met({self._target.metric: eval_result.get(f"validation/{self.family.metric_name(native)}")})

    # --- parameters ------------------------------------------------------------------------
    @property
    def model_params_types(self) -> dict[str, ParameterType]:
        return {name: _parameter_type(kind, name) for name, kind in self._native.param_types.items()}

    param_types = model_params_types

    @property
    def param_shapes(self) -> dict[str, ShapeTuple]:
        return self._shapes

    def attach_metrics_logger(self, metrics_logger) -> None:
        self.metrics_logger = metrics_logger

    # --- data and eval results, under AlgoPerf's names -----------------------------------------
    def batches(self, input_queue: Iterator[Batch]) -> Iterator[Batch]:
        return map(self.family.to_algoperf, input_queue)

    def num_examples(self, split: str) -> int:
        """Examples (sequences, images, graphs) in an eval split: counted once, before the clock starts."""
        if split not in self._num_examples:
            self._num_examples[split] = sum(len(b["targets"]) for b in self._native.eval_batches(split))
        return self._num_examples[split]

    def eval_result(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """An eval_results entry from the runner, under AlgoPerf's names, with `<split>/num_examples`."""
        by_split: dict[str, dict[str, float]] = {}
        out: dict[str, Any] = {}
        for key, value in result.items():
            split, _, metric = key.partition("/")
            if metric:
                by_split.setdefault(split, {})[metric] = value
            else:
                out[key] = value  # score, total_duration, accumulated_*_time
        for split, metrics in by_split.items():
            out.update({f"{split}/{k}": v for k, v in self.family.metrics_view(metrics).items()})
            native = NATIVE_SPLIT.get(split, split)
            if native in self._num_examples:
                out[f"{split}/num_examples"] = self._num_examples[native]
        return out

    # --- AlgoPerf's model_fn and loss_fn ------------------------------------------------------
    def model_fn(self, params: torch.nn.Module, augmented_and_preprocessed_input_batch: Batch, model_state: Any,
                 mode: ForwardPassMode, rng: Any, update_batch_norm: bool, dropout_rate: float | None = None):
        model = params
        model.train(mode == ForwardPassMode.TRAIN)
        for module in model.modules():
            pytorch_utils.update_batch_norm_fn(module, update_batch_norm)
        grad = contextlib.nullcontext() if mode == ForwardPassMode.TRAIN else torch.no_grad()
        with grad, self._native.backend.autocast():
            logits = self._native.model_fn(model, self.family.to_native(augmented_and_preprocessed_input_batch))
        return logits, model_state

    def loss_fn(self, label_batch, logits_batch, mask_batch=None, label_smoothing: float = 0.0) -> dict:
        out = self._native.loss_fn(label_batch, logits_batch, mask_batch, label_smoothing)
        if self._capture:  # the step's first loss: at the parameters the step started from
            n = out["n_valid_examples"]
            self.step_loss = StepLoss(out["summed"].detach(), n.detach() if torch.is_tensor(n) else n)
            self._capture = False
        return out

    @contextlib.contextmanager
    def capturing_loss(self):
        """Keep the first loss_fn result inside the block as `step_loss` (None if there is none)."""
        self.step_loss, self._capture = None, True
        try:
            yield
        finally:
            self._capture = False


def _parameter_type(kind: ParamKind, name: str) -> ParameterType:
    if kind is ParamKind.EMBEDDING:
        return ParameterType.EMBEDDING
    if kind is ParamKind.NORM:
        return ParameterType.LAYER_NORM_BIAS if name.endswith("bias") else ParameterType.LAYER_NORM_SCALE
    if kind is ParamKind.BIAS:
        return ParameterType.BIAS
    return ParameterType.WEIGHT
