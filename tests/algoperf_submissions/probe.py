"""An AlgoPerf submission that records what it is handed: the `train_state` and `eval_results`
of every step (to compare their keys with AlgoPerf's), the batch keys, and `loss_fn`'s
`n_valid_examples` (for gnn: the number of present labels)."""

from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch

from algoperf import spec

SEEN = {"train_state": [], "eval_results": [], "batch_keys": [], "n_valid_examples": [], "weights_sum": [],
        "n_labels": [], "target": []}


def init_optimizer_state(workload: spec.Workload, model_params: spec.ParameterContainer,
                         model_state: spec.ModelAuxiliaryState, hyperparameters: spec.Hyperparameters,
                         rng: spec.RandomState) -> spec.OptimizerState:
    for seen in SEEN.values():  # one trial's record (the module stays imported between trials)
        seen.clear()
    SEEN["target"].extend([workload.target_metric_name, workload.validation_target_value])
    return {"optimizer": torch.optim.AdamW(model_params.parameters(), lr=3e-3)}


def update_params(workload: spec.Workload, current_param_container: spec.ParameterContainer,
                  current_params_types: spec.ParameterTypeTree, model_state: spec.ModelAuxiliaryState,
                  hyperparameters: spec.Hyperparameters, batch: Dict[str, spec.Tensor], loss_type: spec.LossType,
                  optimizer_state: spec.OptimizerState, eval_results: List[Tuple[int, float]], global_step: int,
                  rng: spec.RandomState, train_state: Optional[Dict[str, Any]] = None) -> spec.UpdateReturn:
    SEEN["train_state"].append(dict(train_state))
    SEEN["eval_results"] = [(step, dict(result)) for step, result in eval_results]
    SEEN["batch_keys"].append(set(batch))
    model = current_param_container
    optimizer_state["optimizer"].zero_grad()
    logits, model_state = workload.model_fn(model, batch, model_state, spec.ForwardPassMode.TRAIN, rng, True)
    loss_dict = workload.loss_fn(label_batch=batch["targets"], logits_batch=logits, mask_batch=batch.get("weights"))
    SEEN["n_valid_examples"].append(int(loss_dict["n_valid_examples"]))
    SEEN["n_labels"].append(batch["targets"].numel())
    if batch.get("weights") is not None:
        SEEN["weights_sum"].append(int(batch["weights"].sum()))
    (loss_dict["summed"] / loss_dict["n_valid_examples"]).backward()
    optimizer_state["optimizer"].step()
    return optimizer_state, model, model_state


def get_batch_size(workload_name):
    raise ValueError(f"Unsupported workload name: {workload_name}.")


def data_selection(workload: spec.Workload, input_queue: Iterator[Dict[str, spec.Tensor]],
                   optimizer_state: spec.OptimizerState, current_param_container: spec.ParameterContainer,
                   model_state: spec.ModelAuxiliaryState, hyperparameters: spec.Hyperparameters, global_step: int,
                   rng: spec.RandomState) -> Dict[str, spec.Tensor]:
    return next(input_queue)
