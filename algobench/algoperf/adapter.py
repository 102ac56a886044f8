"""AlgoPerf's calling conventions over algobench's runner and workloads.

The runner calls every submission function by keyword with an algobench workload; an AlgoPerf
submission gets what AlgoPerf's runner gives it instead:
- `init_optimizer_state` and `data_selection` called positionally, `update_params` and
  `prepare_for_eval` by keyword, `train_state` only when the signature has it, with AlgoPerf's
  keys (algobench.forms.base.ALGOPERF_TRAIN_STATE);
- the workload seen through AlgoPerf's API and names (algobench/algoperf/workload_view.py):
  batches with AlgoPerf's keys (gnn's label mask is `weights`), eval results with AlgoPerf's
  metric names and `<split>/num_examples`;
- `hyperparameters` as a namedtuple of the file's keys, or None when there are none or under
  the self-tuning ruleset (the runner decides: `Submission.contract_hparams`);
- `get_batch_size` asked with the AlgoPerf name of the workload (gpt2 -> finewebedu_lm, ...),
  then, on `ValueError`, with its base name (ogbg_gelu -> ogbg), as AlgoPerf retries; a second
  `ValueError` leaves the choice to the workload's preset; `--batch-size` overrides all.
`update_params` returns the step's training loss as a 4th value (the first `loss_fn` result of
the step, read off the clock), so that AlgoPerf files get train.parquet and the divergence check.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from types import MappingProxyType, ModuleType
from typing import Any

import torch

from algobench.algoperf.spec import ShapeTuple
from algobench.algoperf.workload_view import AlgoPerfWorkload, TorchWorkload, base_name
from algobench.forms.base import ALGOPERF_TRAIN_STATE
from algobench.workload import unwrapped_name

__all__ = ["AlgoPerfWorkload", "adapt"]


def adapt(module: ModuleType) -> dict[str, Any]:
    """The harness's full form of an AlgoPerf submission module."""
    adapted: dict[int, AlgoPerfWorkload] = {}
    queues: dict[int, Any] = {}  # the runner's batch iterator -> its AlgoPerf view
    translated: dict[str, Any] = {"of": None, "results": []}  # the runner's eval_results -> AlgoPerf's names

    def view(native: TorchWorkload, model: torch.nn.Module | None = None) -> AlgoPerfWorkload:
        wl = adapted.get(id(native))
        if wl is None:
            wl = adapted[id(native)] = AlgoPerfWorkload(native)
        if model is not None:
            wl._shapes = {unwrapped_name(n): ShapeTuple(tuple(p.shape)) for n, p in model.named_parameters()}
        return wl

    def hparams(hyperparameters):
        return hyperparameters if hyperparameters is not None and len(hyperparameters) else None

    def algoperf_results(wl: AlgoPerfWorkload, eval_results: Sequence) -> list:
        """Translated once per entry (the runner only appends to its list; a new list: a new trial)."""
        results = translated["results"]
        if translated["of"] is not eval_results or len(results) > len(eval_results):
            translated["of"], results = eval_results, []
            translated["results"] = results
        for step, result in eval_results[len(results):]:
            results.append((step, wl.eval_result(result)))
        return results

    def init_optimizer_state(*, workload, model_params, model_state, hyperparameters, rng):
        wl = view(workload, model_params)
        if workload.algoperf_name:  # before the clock starts: eval_results' <split>/num_examples
            for split in workload.eval_splits:
                wl.num_examples(split)
        return module.init_optimizer_state(wl, model_params, model_state, hparams(hyperparameters), rng)

    select = module.data_selection if callable(getattr(module, "data_selection", None)) else None

    def data_selection(*, workload, input_queue, optimizer_state, current_param_container, model_state,
                       hyperparameters, global_step, rng):
        wl = view(workload)
        queue = queues.get(id(input_queue))
        if queue is None:
            queues.clear()
            queue = queues[id(input_queue)] = wl.batches(input_queue)
        if select is None:
            return next(queue)
        return select(wl, queue, optimizer_state, current_param_container, model_state,
                      hparams(hyperparameters), global_step, rng)

    update_takes_train_state = "train_state" in inspect.signature(module.update_params).parameters

    def update_params(*, workload, current_param_container, current_params_types, model_state, hyperparameters,
                      batch, loss_type, optimizer_state, eval_results, global_step, rng, train_state=None):
        wl = view(workload)
        kwargs = dict(workload=wl, current_param_container=current_param_container,
                      current_params_types=wl.model_params_types, model_state=model_state,
                      hyperparameters=hparams(hyperparameters), batch=batch, loss_type=wl.loss_type,
                      optimizer_state=optimizer_state, eval_results=algoperf_results(wl, eval_results),
                      global_step=global_step, rng=rng)
        if update_takes_train_state:
            kwargs["train_state"] = _algoperf_train_state(train_state)
        with wl.capturing_loss():
            out = module.update_params(**kwargs)
        return (*out[:3], wl.step_loss)

    prepare_for_eval = None
    if callable(getattr(module, "prepare_for_eval", None)):
        def prepare_for_eval(*, workload, current_param_container, current_params_types, model_state,
                             hyperparameters, loss_type, optimizer_state, eval_results, global_step, rng):
            wl = view(workload)
            return module.prepare_for_eval(
                workload=wl, current_param_container=current_param_container,
                current_params_types=wl.model_params_types, model_state=model_state,
                hyperparameters=hparams(hyperparameters), loss_type=wl.loss_type, optimizer_state=optimizer_state,
                eval_results=algoperf_results(wl, eval_results), global_step=global_step, rng=rng)

    def get_batch_size(workload: TorchWorkload) -> int | None:
        name = workload.algoperf_name or workload.name
        try:
            return module.get_batch_size(name)
        except ValueError:  # AlgoPerf retries with the base workload's name
            base = base_name(name)
            if base is None or base == name:
                return None  # a workload the submission does not know: the preset decides
        try:
            return module.get_batch_size(base)
        except ValueError:
            return None

    return {
        "init_optimizer_state": init_optimizer_state,
        "update_params": update_params,
        "data_selection": data_selection,
        "prepare_for_eval": prepare_for_eval,
        "get_batch_size": get_batch_size if callable(getattr(module, "get_batch_size", None)) else None,
    }


def _algoperf_train_state(train_state):
    """The runner's train_state with AlgoPerf's keys only (it has no global_step)."""
    if train_state is None:
        return None
    return MappingProxyType({k: train_state[k] for k in ALGOPERF_TRAIN_STATE if k in train_state})
