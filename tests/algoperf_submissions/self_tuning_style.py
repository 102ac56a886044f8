"""A self-tuning AlgoPerf PyTorch submission written as the published ones are (the self-tuning
NAdamW baseline, AdEMAMix, Lion): `HPARAMS` a dict turned into a namedtuple, and the
`hyperparameters` argument (None under the self-tuning ruleset) replaced by it. AdamW with
linear warmup and cosine decay, gradient clipping."""

import collections
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
import torch.distributed.nn as dist_nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

from algoperf import spec
from algoperf.pytorch_utils import pytorch_setup

USE_PYTORCH_DDP = pytorch_setup()[0]

HPARAMS = {
    "dropout_rate": 0.0,
    "learning_rate": 0.003,
    "one_minus_beta1": 0.1,
    "beta2": 0.95,
    "weight_decay": 0.1,
    "warmup_factor": 0.05,
    "grad_clip": 1.0,
}
HPARAMS = collections.namedtuple("Hyperparameters", HPARAMS.keys())(**HPARAMS)
SEEN = {"hyperparameters": []}


def init_optimizer_state(workload: spec.Workload, model_params: spec.ParameterContainer,
                         model_state: spec.ModelAuxiliaryState, hyperparameters: spec.Hyperparameters,
                         rng: spec.RandomState) -> spec.OptimizerState:
    del model_state, rng
    SEEN["hyperparameters"].append(hyperparameters)
    if hyperparameters is None:
        hyperparameters = HPARAMS
    optimizer = torch.optim.AdamW(model_params.parameters(), lr=hyperparameters.learning_rate,
                                  betas=(1.0 - hyperparameters.one_minus_beta1, hyperparameters.beta2),
                                  eps=1e-8, weight_decay=hyperparameters.weight_decay)
    warmup_steps = int(hyperparameters.warmup_factor * workload.step_hint)
    warmup = LinearLR(optimizer, start_factor=1e-10, end_factor=1.0, total_iters=warmup_steps)
    cosine = CosineAnnealingLR(optimizer, T_max=max(workload.step_hint - warmup_steps, 1))
    scheduler = SequentialLR(optimizer, schedulers=[warmup, cosine], milestones=[warmup_steps])
    return {"optimizer": optimizer, "scheduler": scheduler}


def update_params(workload: spec.Workload, current_param_container: spec.ParameterContainer,
                  current_params_types: spec.ParameterTypeTree, model_state: spec.ModelAuxiliaryState,
                  hyperparameters: spec.Hyperparameters, batch: Dict[str, spec.Tensor], loss_type: spec.LossType,
                  optimizer_state: spec.OptimizerState, eval_results: List[Tuple[int, float]], global_step: int,
                  rng: spec.RandomState, train_state: Optional[Dict[str, Any]] = None) -> spec.UpdateReturn:
    del current_params_types, loss_type, eval_results, train_state
    if hyperparameters is None:
        hyperparameters = HPARAMS
    current_model = current_param_container
    current_model.train()
    optimizer_state["optimizer"].zero_grad()
    logits_batch, new_model_state = workload.model_fn(
        params=current_model, augmented_and_preprocessed_input_batch=batch, model_state=model_state,
        mode=spec.ForwardPassMode.TRAIN, rng=rng, update_batch_norm=True,
        dropout_rate=hyperparameters.dropout_rate)
    label_smoothing = hyperparameters.label_smoothing if hasattr(hyperparameters, "label_smoothing") else 0.0
    loss_dict = workload.loss_fn(label_batch=batch["targets"], logits_batch=logits_batch,
                                 mask_batch=batch.get("weights"), label_smoothing=label_smoothing)
    summed_loss, n_valid_examples = loss_dict["summed"], loss_dict["n_valid_examples"]
    if USE_PYTORCH_DDP:
        summed_loss = dist_nn.all_reduce(summed_loss)
        n_valid_examples = dist_nn.all_reduce(n_valid_examples)
    loss = summed_loss / n_valid_examples
    loss.backward()
    grad_clip = getattr(hyperparameters, "grad_clip", None)
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(current_model.parameters(), max_norm=grad_clip)
    optimizer_state["optimizer"].step()
    optimizer_state["scheduler"].step()
    return optimizer_state, current_param_container, new_model_state


def prepare_for_eval(workload: spec.Workload, current_param_container: spec.ParameterContainer,
                     current_params_types: spec.ParameterTypeTree, model_state: spec.ModelAuxiliaryState,
                     hyperparameters: spec.Hyperparameters, loss_type: spec.LossType,
                     optimizer_state: spec.OptimizerState, eval_results: List[Tuple[int, float]],
                     global_step: int, rng: spec.RandomState) -> spec.UpdateReturn:
    del workload, hyperparameters, current_params_types, loss_type, eval_results, global_step, rng
    return optimizer_state, current_param_container, model_state


def get_batch_size(workload_name):
    if workload_name == "imagenet_vit":
        return 1024
    elif workload_name == "ogbg":
        return 512
    else:
        raise ValueError(f"Unsupported workload name: {workload_name}.")


def data_selection(workload: spec.Workload, input_queue: Iterator[Dict[str, spec.Tensor]],
                   optimizer_state: spec.OptimizerState, current_param_container: spec.ParameterContainer,
                   model_state: spec.ModelAuxiliaryState, hyperparameters: spec.Hyperparameters, global_step: int,
                   rng: spec.RandomState) -> Dict[str, spec.Tensor]:
    del workload, optimizer_state, current_param_container, model_state, hyperparameters, global_step, rng
    return next(input_queue)
