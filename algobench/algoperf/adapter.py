"""AlgoPerf's calling conventions over algobench's runner and workloads.

The runner calls every submission function by keyword with an algobench workload; an AlgoPerf
submission gets what AlgoPerf's runner gives it instead:
- `init_optimizer_state` and `data_selection` called positionally, `update_params` and
  `prepare_for_eval` by keyword, `train_state` only when the signature has it;
- a workload speaking AlgoPerf's API (`model_fn(params, augmented_and_preprocessed_input_batch,
  model_state, mode, rng, update_batch_norm, dropout_rate)` returning `(logits, model_state)`,
  `loss_fn` returning `summed`, `n_valid_examples` (a tensor) and `per_example`, `step_hint`,
  `target_metric_name`, `max_allowed_runtime_sec`, `eval_period_time_sec`, `metrics_logger`,
  `model_params_types` keyed by AlgoPerf's `ParameterType`);
- `hyperparameters` as a namedtuple of the file's keys, or None when there are none (the
  self-tuning ruleset);
- `get_batch_size` asked with the AlgoPerf name of the workload (gpt2 -> finewebedu_lm, ...);
  a `ValueError` (a name the submission does not know) falls back to the workload's own batch
  size; `--batch-size` overrides both.
"""

from __future__ import annotations

import contextlib
import inspect
from types import ModuleType
from typing import Any

import torch

from algobench.algoperf import pytorch_utils
from algobench.algoperf.spec import ForwardPassMode, LossType, ParameterType, ShapeTuple
from algobench.workload import ParamKind, unwrapped_name


TorchWorkload = Any  # algobench.frameworks.torch.TorchWorkload (a layer above this one)


class AlgoPerfWorkload:
    """An algobench TorchWorkload seen through AlgoPerf's Workload API."""

    def __init__(self, native: TorchWorkload) -> None:
        self._native = native
        self.metrics_logger = None
        self.loss_type = LossType[native.loss_type.upper()]  # the workload's own (gnn: sigmoid)

    def __getattr__(self, name: str) -> Any:  # step_hint, max_allowed_runtime_sec, ...
        return getattr(self._native, name)

    @property
    def target_metric_name(self) -> str:
        """AlgoPerf names the metric without its split: 'loss', 'accuracy', 'mean_average_precision'."""
        return self._native.preset.target.metric.split("_", 1)[1]

    @property
    def validation_target_value(self) -> float:
        return self._native.preset.target.value

    def has_reached_validation_target(self, eval_result: dict[str, float]) -> bool:
        return self._native.preset.target.met({self._native.preset.target.metric:
                                               eval_result.get(f"validation/{self.target_metric_name}")})

    @property
    def model_params_types(self) -> dict[str, ParameterType]:
        return {name: _parameter_type(kind, name) for name, kind in self._native.param_types.items()}

    param_types = model_params_types

    @property
    def param_shapes(self) -> dict[str, ShapeTuple]:
        return self._shapes

    def attach_metrics_logger(self, metrics_logger) -> None:
        self.metrics_logger = metrics_logger

    def model_fn(self, params: torch.nn.Module, augmented_and_preprocessed_input_batch: dict, model_state: Any,
                 mode: ForwardPassMode, rng: Any, update_batch_norm: bool, dropout_rate: float | None = None):
        model = params
        model.train(mode == ForwardPassMode.TRAIN)
        for module in model.modules():
            pytorch_utils.update_batch_norm_fn(module, update_batch_norm)
        grad = contextlib.nullcontext() if mode == ForwardPassMode.TRAIN else torch.no_grad()
        with grad, self._native.backend.autocast():
            logits = self._native.model_fn(model, augmented_and_preprocessed_input_batch)
        return logits, model_state

    def loss_fn(self, label_batch, logits_batch, mask_batch=None, label_smoothing: float = 0.0) -> dict:
        return self._native.loss_fn(label_batch, logits_batch, mask_batch, label_smoothing)


def _parameter_type(kind: ParamKind, name: str) -> ParameterType:
    if kind is ParamKind.EMBEDDING:
        return ParameterType.EMBEDDING
    if kind is ParamKind.NORM:
        return ParameterType.LAYER_NORM_BIAS if name.endswith("bias") else ParameterType.LAYER_NORM_SCALE
    if kind is ParamKind.BIAS:
        return ParameterType.BIAS
    return ParameterType.WEIGHT


def adapt(module: ModuleType) -> dict[str, Any]:
    """The harness's full form of an AlgoPerf submission module."""
    adapted: dict[int, AlgoPerfWorkload] = {}

    def view(native: TorchWorkload, model: torch.nn.Module | None = None) -> AlgoPerfWorkload:
        wl = adapted.get(id(native))
        if wl is None:
            wl = adapted[id(native)] = AlgoPerfWorkload(native)
        if model is not None:
            wl._shapes = {unwrapped_name(n): ShapeTuple(tuple(p.shape)) for n, p in model.named_parameters()}
        return wl

    def hparams(hyperparameters):
        return hyperparameters if hyperparameters is not None and len(hyperparameters) else None

    def init_optimizer_state(*, workload, model_params, model_state, hyperparameters, rng):
        return module.init_optimizer_state(view(workload, model_params), model_params, model_state,
                                           hparams(hyperparameters), rng)

    def data_selection(*, workload, input_queue, optimizer_state, current_param_container, model_state,
                       hyperparameters, global_step, rng):
        return module.data_selection(view(workload), input_queue, optimizer_state, current_param_container,
                                     model_state, hparams(hyperparameters), global_step, rng)

    update_takes_train_state = "train_state" in inspect.signature(module.update_params).parameters

    def update_params(*, workload, current_param_container, current_params_types, model_state, hyperparameters,
                      batch, loss_type, optimizer_state, eval_results, global_step, rng, train_state=None):
        wl = view(workload)
        kwargs = dict(workload=wl, current_param_container=current_param_container,
                      current_params_types=wl.model_params_types, model_state=model_state,
                      hyperparameters=hparams(hyperparameters), batch=batch, loss_type=wl.loss_type,
                      optimizer_state=optimizer_state, eval_results=eval_results, global_step=global_step, rng=rng)
        if update_takes_train_state:
            kwargs["train_state"] = train_state
        return module.update_params(**kwargs)

    prepare_for_eval = None
    if callable(getattr(module, "prepare_for_eval", None)):
        def prepare_for_eval(*, workload, current_param_container, current_params_types, model_state,
                             hyperparameters, loss_type, optimizer_state, eval_results, global_step, rng):
            wl = view(workload)
            return module.prepare_for_eval(
                workload=wl, current_param_container=current_param_container,
                current_params_types=wl.model_params_types, model_state=model_state,
                hyperparameters=hparams(hyperparameters), loss_type=wl.loss_type, optimizer_state=optimizer_state,
                eval_results=eval_results, global_step=global_step, rng=rng)

    def get_batch_size(workload: TorchWorkload) -> int | None:
        name = workload.algoperf_name or workload.name
        try:
            return module.get_batch_size(name)
        except ValueError:  # a workload the submission does not know: the preset decides
            return None

    return {
        "init_optimizer_state": init_optimizer_state,
        "update_params": update_params,
        "data_selection": data_selection if callable(getattr(module, "data_selection", None)) else None,
        "prepare_for_eval": prepare_for_eval,
        "get_batch_size": get_batch_size if callable(getattr(module, "get_batch_size", None)) else None,
    }

