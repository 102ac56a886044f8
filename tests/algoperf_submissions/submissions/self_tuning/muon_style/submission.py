"""A self-tuning AlgoPerf submission in the AlgoPerf submissions repository's layout
(`submissions/self_tuning/<name>/submission.py`), written as the published Muon submissions are:
it imports its sibling helper through the repository's package path, and its `HPARAMS` is a
`SimpleNamespace` that replaces the `hyperparameters` it is handed."""

from types import SimpleNamespace
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
import torch.distributed.nn as dist_nn

from algoperf import spec
from algoperf.pytorch_utils import pytorch_setup

from submissions.self_tuning.muon_style.muon import MuonSingleDevice, split_params_muon_adam

USE_PYTORCH_DDP = pytorch_setup()[0]

HPARAMS = {
    "muon_learning_rate": 0.02,
    "muon_beta": 0.95,
    "nadamw_learning_rate": 0.004,
    "nadamw_beta1": 0.9,
    "nadamw_beta2": 0.95,
    "weight_decay": 0.0,
    "dropout_rate": 0.0,
}
HPARAMS = SimpleNamespace(**HPARAMS)
SEEN = {"hyperparameters": []}


def init_optimizer_state(workload: spec.Workload, model_params: spec.ParameterContainer,
                         model_state: spec.ModelAuxiliaryState, hyperparameters: spec.Hyperparameters,
                         rng: spec.RandomState) -> spec.OptimizerState:
    del model_state, rng
    SEEN["hyperparameters"].append(hyperparameters)
    hyperparameters = HPARAMS
    muon_params, adam_params = split_params_muon_adam(model_params)
    return {
        "muon": MuonSingleDevice(muon_params, lr=hyperparameters.muon_learning_rate, beta=hyperparameters.muon_beta),
        "nadamw": torch.optim.NAdam(adam_params, lr=hyperparameters.nadamw_learning_rate,
                                    betas=(hyperparameters.nadamw_beta1, hyperparameters.nadamw_beta2),
                                    weight_decay=hyperparameters.weight_decay, decoupled_weight_decay=True),
    }


def update_params(workload: spec.Workload, current_param_container: spec.ParameterContainer,
                  current_params_types: spec.ParameterTypeTree, model_state: spec.ModelAuxiliaryState,
                  hyperparameters: spec.Hyperparameters, batch: Dict[str, spec.Tensor], loss_type: spec.LossType,
                  optimizer_state: spec.OptimizerState, eval_results: List[Tuple[int, float]], global_step: int,
                  rng: spec.RandomState, train_state: Optional[Dict[str, Any]] = None) -> spec.UpdateReturn:
    del current_params_types, loss_type, train_state, eval_results
    hyperparameters = HPARAMS
    current_model = current_param_container
    current_model.train()
    optimizer_state["muon"].zero_grad()
    optimizer_state["nadamw"].zero_grad()
    logits_batch, new_model_state = workload.model_fn(
        params=current_model, augmented_and_preprocessed_input_batch=batch, model_state=model_state,
        mode=spec.ForwardPassMode.TRAIN, rng=rng, update_batch_norm=True, dropout_rate=hyperparameters.dropout_rate)
    loss_dict = workload.loss_fn(label_batch=batch["targets"], logits_batch=logits_batch,
                                 mask_batch=batch.get("weights"), label_smoothing=0.0)
    summed_loss, n_valid_examples = loss_dict["summed"], loss_dict["n_valid_examples"]
    if USE_PYTORCH_DDP:
        summed_loss = dist_nn.all_reduce(summed_loss)
        n_valid_examples = dist_nn.all_reduce(n_valid_examples)
    loss = summed_loss / n_valid_examples
    loss.backward()
    optimizer_state["muon"].step()
    optimizer_state["nadamw"].step()
    return optimizer_state, current_param_container, new_model_state


def get_batch_size(workload_name):
    if workload_name == "ogbg":
        return 512
    elif workload_name == "finewebedu_lm":
        return 16
    else:
        raise ValueError(f"Unsupported workload name: {workload_name}.")


def data_selection(workload: spec.Workload, input_queue: Iterator[Dict[str, spec.Tensor]],
                   optimizer_state: spec.OptimizerState, current_param_container: spec.ParameterContainer,
                   model_state: spec.ModelAuxiliaryState, hyperparameters: spec.Hyperparameters, global_step: int,
                   rng: spec.RandomState) -> Dict[str, spec.Tensor]:
    del workload, optimizer_state, current_param_container, model_state, hyperparameters, global_step, rng
    return next(input_queue)
