"""An external-tuning AlgoPerf submission whose `HPARAMS` is a `SimpleNamespace` (as some
published files have it): its values are the defaults the harness hands back as
`hyperparameters`, read by attribute and probed with `getattr`."""

from types import SimpleNamespace
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch

from algoperf import spec

HPARAMS = SimpleNamespace(learning_rate=0.003, beta1=0.9, beta2=0.95, weight_decay=0.1, grad_clip=1.0)
SEEN = {"hyperparameters": []}


def init_optimizer_state(workload: spec.Workload, model_params: spec.ParameterContainer,
                         model_state: spec.ModelAuxiliaryState, hyperparameters: spec.Hyperparameters,
                         rng: spec.RandomState) -> spec.OptimizerState:
    del model_state, rng
    SEEN["hyperparameters"].append(hyperparameters)
    return {"optimizer": torch.optim.AdamW(model_params.parameters(), lr=hyperparameters.learning_rate,
                                           betas=(hyperparameters.beta1, hyperparameters.beta2),
                                           weight_decay=hyperparameters.weight_decay)}


def update_params(workload: spec.Workload, current_param_container: spec.ParameterContainer,
                  current_params_types: spec.ParameterTypeTree, model_state: spec.ModelAuxiliaryState,
                  hyperparameters: spec.Hyperparameters, batch: Dict[str, spec.Tensor], loss_type: spec.LossType,
                  optimizer_state: spec.OptimizerState, eval_results: List[Tuple[int, float]], global_step: int,
                  rng: spec.RandomState, train_state: Optional[Dict[str, Any]] = None) -> spec.UpdateReturn:
    del current_params_types, loss_type, eval_results, train_state
    model = current_param_container
    model.train()
    optimizer_state["optimizer"].zero_grad()
    logits, new_model_state = workload.model_fn(model, batch, model_state, spec.ForwardPassMode.TRAIN, rng, True)
    loss_dict = workload.loss_fn(batch["targets"], logits, batch.get("weights"))
    loss = loss_dict["summed"] / loss_dict["n_valid_examples"]
    loss.backward()
    grad_clip = getattr(hyperparameters, "grad_clip", None)
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=grad_clip)
    optimizer_state["optimizer"].step()
    return optimizer_state, model, new_model_state


def get_batch_size(workload_name):
    if workload_name == "ogbg":
        return 512
    raise ValueError(f"Unsupported workload name: {workload_name}.")


def data_selection(workload: spec.Workload, input_queue: Iterator[Dict[str, spec.Tensor]],
                   optimizer_state: spec.OptimizerState, current_param_container: spec.ParameterContainer,
                   model_state: spec.ModelAuxiliaryState, hyperparameters: spec.Hyperparameters, global_step: int,
                   rng: spec.RandomState) -> Dict[str, spec.Tensor]:
    return next(input_queue)
