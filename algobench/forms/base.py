"""What every form shares: the full form's calling contract, spelled out once.

The runner only calls the full (AlgoPerf-style) form: `init_optimizer_state`, `update_params`,
`data_selection`, and optionally `prepare_for_eval` and `get_batch_size`, all by keyword. Each
other form (simple, optax, an AlgoPerf file) is turned into it by its module here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

# AlgoPerf's train_state keys (submission_runner.train_once); the runner adds global_step.
ALGOPERF_TRAIN_STATE = ("validation_goal_reached", "test_goal_reached", "is_time_remaining", "last_eval_time",
                        "training_complete", "accumulated_submission_time", "accumulated_eval_time",
                        "accumulated_logging_time", "last_step_end_time")
ALGOPERF_SPLIT = {"val": "validation"}  # eval_results keys read 'validation/loss', as in AlgoPerf


def default_data_selection(*, workload, input_queue: Iterator, optimizer_state, current_param_container,
                           model_state, hyperparameters, global_step: int, rng) -> Any:
    return next(input_queue)


def contract_kwargs(*, workload: Any, params: Any, model_state: Any, hyperparameters: Any, loss_type: Any,
                    optimizer_state: Any, eval_results: Sequence, global_step: int, rng: Any) -> dict[str, Any]:
    """The keyword arguments `update_params` (with `batch`, and `train_state` when it takes one)
    and `prepare_for_eval` both receive."""
    return dict(workload=workload, current_param_container=params, current_params_types=workload.param_types,
                model_state=model_state, hyperparameters=hyperparameters, loss_type=loss_type,
                optimizer_state=optimizer_state, eval_results=eval_results, global_step=global_step, rng=rng)


def train_state(*, global_step: int, submission_time_s: float, eval_time_s: float, budget_s: float,
                last_eval_time: float, last_step_end_time: float) -> Mapping[str, Any]:
    """What `update_params` gets as `train_state` (read-only): AlgoPerf's keys, and `global_step`.
    Times are seconds; `last_eval_time` and `last_step_end_time` are wall-clock timestamps
    (`time.time()`, 0 before the first eval), as in AlgoPerf. A trial stops at its target, so both
    goals are False while it trains; the runner logs nothing in its loop, so logging time is 0."""
    return MappingProxyType({
        "validation_goal_reached": False, "test_goal_reached": False,
        "is_time_remaining": submission_time_s < budget_s, "last_eval_time": last_eval_time,
        "training_complete": False, "accumulated_submission_time": submission_time_s,
        "accumulated_eval_time": eval_time_s, "accumulated_logging_time": 0.0,
        "last_step_end_time": last_step_end_time, "global_step": global_step})


def eval_result(by_split: Mapping[str, Mapping[str, float]], *, train_loss: float | None, submission_time_s: float,
                eval_time_s: float, total_duration_s: float) -> dict[str, float]:
    """One `eval_results` entry, as AlgoPerf's runner writes it: `<split>/<metric>` for the
    evaluated splits, `train/loss` (here: the mean training loss logged since the previous eval;
    AlgoPerf evaluates a fixed train subset), `score` and the accumulated times in seconds."""
    out = {f"{ALGOPERF_SPLIT.get(split, split)}/{k}": v for split, ms in by_split.items() for k, v in ms.items()}
    if train_loss is not None:
        out["train/loss"] = train_loss
    out.update({"score": submission_time_s, "total_duration": total_duration_s,
                "accumulated_submission_time": submission_time_s, "accumulated_eval_time": eval_time_s,
                "accumulated_logging_time": 0.0})
    return out


def takes_train_state(update_params: Callable) -> bool:
    return "train_state" in inspect.signature(update_params).parameters


def full_form(module: Any) -> dict[str, Any]:
    """A module that already has the full form."""
    return {
        "init_optimizer_state": module.init_optimizer_state,
        "update_params": module.update_params,
        "data_selection": getattr(module, "data_selection", default_data_selection),
        "prepare_for_eval": getattr(module, "prepare_for_eval", None),
        "get_batch_size": _by_name(module.get_batch_size) if callable(getattr(module, "get_batch_size", None)) else None,
    }


def _by_name(get_batch_size: Callable[[str], int | None]) -> Callable[[Any], int | None]:
    """The runner asks with the workload object; a full-form module answers for its name."""
    return lambda workload: get_batch_size(workload.name)


def hparams_mapping(value: Any) -> dict[str, Any]:
    """HPARAMS as a dict, a namedtuple or a SimpleNamespace (all three occur in AlgoPerf files)."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if hasattr(value, "_asdict"):
        return dict(value._asdict())
    if hasattr(value, "__dict__"):
        return dict(vars(value))
    raise TypeError(f"HPARAMS must be a dict, a namedtuple or a SimpleNamespace, not {type(value).__name__}")
