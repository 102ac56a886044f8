"""What every form shares: the full form's calling contract, spelled out once.

The runner only calls the full (AlgoPerf-style) form: `init_optimizer_state`, `update_params`,
`data_selection`, and optionally `prepare_for_eval` and `get_batch_size`, all by keyword. Each
other form (simple, optax, an AlgoPerf file) is turned into it by its module here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any


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
    raise TypeError(f"HPARAMS is a {type(value).__name__}: use a dict, a namedtuple or a SimpleNamespace")
