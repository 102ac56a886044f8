"""The simple form: `HPARAMS`, `SEARCH_SPACE`, `make_optimizer(*, model, hparams, workload) ->
torch.optim.Optimizer` and `lr_schedule(*, step, step_hint, hparams) -> float`, turned into the
full form. One update is `simple_step`: schedule, zero_grad, loss, backward, (clip), step.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch

from algobench.errors import UserError
from algobench.forms.base import default_data_selection


def simple_step(module: ModuleType, optimizer: torch.optim.Optimizer, *, workload: Any, model: torch.nn.Module,
                batch: Any, hparams: Any, step: int,
                on_grads: Callable[[list[torch.Tensor]], None] | None = None) -> torch.Tensor:
    """One update of a simple-form submission; returns the batch's loss (on the device).
    `on_grads` sees the gradients before clipping (the gradient-norm recorder uses it)."""
    lr = module.lr_schedule(step=step, step_hint=workload.step_hint, hparams=hparams)
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = workload.loss(model, batch)
    loss.backward()
    if on_grads is not None:
        on_grads([p.grad for p in model.parameters() if p.grad is not None])
    grad_clip = getattr(hparams, "grad_clip", None)
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.detach()


SIGNATURES = {"make_optimizer": ("model", "hparams", "workload"), "lr_schedule": ("step", "step_hint", "hparams")}


def check_signatures(module: ModuleType, path: Any) -> None:
    """Both functions must take their arguments by keyword; a UserError shows the signature wanted."""
    for name, keywords in SIGNATURES.items():
        fn = getattr(module, name)
        try:
            inspect.signature(fn).bind(**dict.fromkeys(keywords))
        except TypeError as err:
            raise UserError(f"submission {path}: {name}{inspect.signature(fn)} cannot be called as "
                            f"{name}({', '.join(k + '=...' for k in keywords)}) ({err}); write "
                            f"def {name}(*, {', '.join(keywords)})") from None
        except ValueError:  # no signature to read (a builtin): let the call tell
            continue


def full_form(module: ModuleType) -> dict[str, Any]:
    def init_optimizer_state(*, workload, model_params, model_state, hyperparameters, rng):
        optimizer = module.make_optimizer(model=model_params, hparams=hyperparameters, workload=workload)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"make_optimizer returned {type(optimizer).__name__}, not a torch.optim.Optimizer")
        return {"optimizer": optimizer}

    def update_params(*, workload, current_param_container, current_params_types, model_state,
                      hyperparameters, batch, loss_type, optimizer_state, eval_results, global_step,
                      rng, train_state=None):
        loss = simple_step(module, optimizer_state["optimizer"], workload=workload, model=current_param_container,
                           batch=batch, hparams=hyperparameters, step=global_step)
        return optimizer_state, current_param_container, model_state, loss

    return {
        "init_optimizer_state": init_optimizer_state,
        "update_params": update_params,
        "data_selection": default_data_selection,
        "prepare_for_eval": None,
        "get_batch_size": None,
    }
