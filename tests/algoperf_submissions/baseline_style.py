"""An AlgoPerf-format PyTorch submission written as AlgoPerf's baselines are (old package name,
positional/keyword calls, LR schedulers, hasattr-probed hyperparameters, DDP all-reduce, absl)."""

from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
import torch.distributed.nn as dist_nn
from absl import logging
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

from algorithmic_efficiency import spec
from algorithmic_efficiency.pytorch_utils import pytorch_setup

USE_PYTORCH_DDP = pytorch_setup()[0]
CALLS: List[Tuple[str, Any]] = []


def init_optimizer_state(workload: spec.Workload, model_params: spec.ParameterContainer,
                         model_state: spec.ModelAuxiliaryState, hyperparameters: spec.Hyperparameters,
                         rng: spec.RandomState, /) -> spec.OptimizerState:  # positional-only: as AlgoPerf calls it
    del model_state, rng
    optimizer = torch.optim.AdamW(model_params.parameters(), lr=hyperparameters.learning_rate,
                                  betas=(1.0 - hyperparameters.one_minus_beta1, hyperparameters.beta2),
                                  weight_decay=hyperparameters.weight_decay)
    warmup_steps = int(hyperparameters.warmup_factor * workload.step_hint)
    warmup = LinearLR(optimizer, start_factor=1e-10, end_factor=1.0, total_iters=warmup_steps)
    cosine = CosineAnnealingLR(optimizer, T_max=max(workload.step_hint - warmup_steps, 1))
    scheduler = SequentialLR(optimizer, schedulers=[warmup, cosine], milestones=[warmup_steps])
    CALLS.append(("init", (workload.target_metric_name, workload.max_allowed_runtime_sec,
                           workload.eval_period_time_sec, workload.metrics_logger, type(hyperparameters).__name__)))
    return {"optimizer": optimizer, "scheduler": scheduler}


def update_params(workload: spec.Workload, current_param_container: spec.ParameterContainer,
                  current_params_types: spec.ParameterTypeTree, model_state: spec.ModelAuxiliaryState,
                  hyperparameters: spec.Hyperparameters, batch: Dict[str, spec.Tensor], loss_type: spec.LossType,
                  optimizer_state: spec.OptimizerState, eval_results: List[Tuple[int, float]], global_step: int,
                  rng: spec.RandomState, train_state: Optional[Dict[str, Any]] = None) -> spec.UpdateReturn:
    current_model = current_param_container
    current_model.train()
    optimizer_state["optimizer"].zero_grad()
    logits_batch, new_model_state = workload.model_fn(
        params=current_model, augmented_and_preprocessed_input_batch=batch, model_state=model_state,
        mode=spec.ForwardPassMode.TRAIN, rng=rng, update_batch_norm=True)
    label_smoothing = hyperparameters.label_smoothing if hasattr(hyperparameters, "label_smoothing") else 0.0
    grad_clip = hyperparameters.grad_clip if hasattr(hyperparameters, "grad_clip") else None
    loss_dict = workload.loss_fn(label_batch=batch["targets"], logits_batch=logits_batch,
                                 mask_batch=batch.get("weights"), label_smoothing=label_smoothing)
    summed_loss, n_valid_examples = loss_dict["summed"], loss_dict["n_valid_examples"]
    if USE_PYTORCH_DDP:
        summed_loss = dist_nn.all_reduce(summed_loss)
        n_valid_examples = dist_nn.all_reduce(n_valid_examples)
    loss = summed_loss / n_valid_examples
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(current_model.parameters(), max_norm=grad_clip)
    optimizer_state["optimizer"].step()
    optimizer_state["scheduler"].step()
    if global_step % 10 == 0:
        logging.info("%d) loss = %0.3f", global_step, loss.item())
    CALLS.append(("update", (global_step, loss_type, len(eval_results), label_smoothing, grad_clip,
                             dict(train_state) if train_state is not None else None,
                             set(current_params_types.values()), torch.is_tensor(n_valid_examples))))
    return optimizer_state, current_param_container, new_model_state


def get_batch_size(workload_name):
    if workload_name == "imagenet_vit":
        return 1024
    if workload_name == "ogbg":
        return 512
    raise ValueError(f"Unsupported workload name: {workload_name}.")


def data_selection(workload: spec.Workload, input_queue: Iterator[Dict[str, spec.Tensor]],
                   optimizer_state: spec.OptimizerState, current_param_container: spec.ParameterContainer,
                   model_state: spec.ModelAuxiliaryState, hyperparameters: spec.Hyperparameters, global_step: int,
                   rng: spec.RandomState, /) -> Dict[str, spec.Tensor]:
    return next(input_queue)
