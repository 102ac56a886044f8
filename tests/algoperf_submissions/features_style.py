"""An AlgoPerf-format submission (new package name) using the rest of the surface: every spec name
in annotations, keyword-only update_params without train_state, prepare_for_eval (parameter
averaging, as LAWA does), TrainingCompleteError, get_batch_size for the LM workload, and
hyperparameters=None under the self-tuning ruleset."""

import copy
from typing import Dict, Iterator, List, Tuple

import numpy as np
import torch

from algoperf import spec
from algoperf.pytorch_utils import pytorch_setup, update_batch_norm_fn

_, RANK, DEVICE, N_GPUS = pytorch_setup()
SEEN = {"hyperparameters": [], "rngs": [], "prepare": [], "eval_results": []}
ANNOTATED: Tuple[spec.ParameterContainer, spec.ParameterTypeTree, spec.ModelAuxiliaryState, spec.Hyperparameters,
                 spec.RandomState, spec.OptimizerState, spec.Tensor, spec.LossType, spec.UpdateReturn,
                 spec.ForwardPassMode, spec.ParameterType, spec.ShapeTuple] = None
STOP_AT = 12


def init_optimizer_state(workload: spec.Workload, model_params: spec.ParameterContainer,
                         model_state: spec.ModelAuxiliaryState, hyperparameters: spec.Hyperparameters,
                         rng: spec.RandomState) -> spec.OptimizerState:
    SEEN["hyperparameters"].append(hyperparameters)
    SEEN["shapes"] = dict(workload.param_shapes)
    lr = 3e-3 if hyperparameters is None else hyperparameters.learning_rate
    return {"optimizer": torch.optim.SGD(model_params.parameters(), lr=lr, momentum=0.9),
            "average": copy.deepcopy(model_params.state_dict()), "n": 0}


def update_params(*, workload: spec.Workload, current_param_container: spec.ParameterContainer,
                  current_params_types: spec.ParameterTypeTree, model_state: spec.ModelAuxiliaryState,
                  hyperparameters: spec.Hyperparameters, batch: Dict[str, spec.Tensor], loss_type: spec.LossType,
                  optimizer_state: spec.OptimizerState, eval_results: List[Tuple[int, float]], global_step: int,
                  rng: spec.RandomState) -> spec.UpdateReturn:
    SEEN["rngs"].append(rng)
    SEEN["eval_results"] = list(eval_results)
    model = current_param_container
    for module in model.modules():
        update_batch_norm_fn(module, update_batch_norm=False)
    optimizer = optimizer_state["optimizer"]
    optimizer.zero_grad()
    logits, model_state = workload.model_fn(model, batch, model_state, spec.ForwardPassMode.TRAIN, rng, False)
    loss = workload.loss_fn(batch["targets"], logits)["summed"] / workload.loss_fn(batch["targets"], logits)["n_valid_examples"]
    loss.backward()
    optimizer.step()
    with torch.no_grad():  # running average of the weights, used for evaluation
        n = optimizer_state["n"] = optimizer_state["n"] + 1
        for key, value in model.state_dict().items():
            optimizer_state["average"][key].mul_((n - 1) / n).add_(value / n)
    if global_step + 1 == STOP_AT:
        raise spec.TrainingCompleteError()
    return optimizer_state, model, model_state


def prepare_for_eval(workload: spec.Workload, current_param_container: spec.ParameterContainer,
                     current_params_types: spec.ParameterTypeTree, model_state: spec.ModelAuxiliaryState,
                     hyperparameters: spec.Hyperparameters, loss_type: spec.LossType,
                     optimizer_state: spec.OptimizerState, eval_results: List[Tuple[int, float]],
                     global_step: int, rng: spec.RandomState) -> spec.UpdateReturn:
    SEEN["prepare"].append(global_step)
    current_param_container.load_state_dict(optimizer_state["average"])
    return optimizer_state, current_param_container, model_state


def get_batch_size(workload_name: str) -> int:
    if workload_name == "finewebedu_lm":
        return 8
    raise ValueError(f"Unsupported workload name: {workload_name}.")


def data_selection(workload: spec.Workload, input_queue: Iterator[Dict[str, spec.Tensor]],
                   optimizer_state: spec.OptimizerState, current_param_container: spec.ParameterContainer,
                   model_state: spec.ModelAuxiliaryState, hyperparameters: spec.Hyperparameters, global_step: int,
                   rng: spec.RandomState) -> Dict[str, spec.Tensor]:
    assert isinstance(rng, np.ndarray)
    return next(input_queue)
