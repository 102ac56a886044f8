"""The optax form (for `--framework jax`): `HPARAMS`, `SEARCH_SPACE`, `lr_schedule` as in the simple
form and `make_optax(*, learning_rate, hparams, workload) -> optax.GradientTransformation`, turned
into the full form: the schedule on the host, then one jitted step (loss, gradients, clip, the
submission's transformation, apply). Imported only for JAX trials (jax is an optional extra).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

from algobench.forms.base import default_data_selection

Params = dict[str, jax.Array]
Batch = dict[str, jax.Array]


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    """torch's `clip_grad_norm_`: scale by min(1, max_norm / (norm + 1e-6)) (optax's own clip has
    no 1e-6, which the parity tests would see)."""

    def update(updates, state, params=None):
        norm = jnp.sqrt(sum(jnp.sum(jnp.square(g.astype(jnp.float32))) for g in jax.tree.leaves(updates)))
        scale = jnp.minimum(1.0, max_norm / (norm + 1e-6))
        return jax.tree.map(lambda g: g * scale.astype(g.dtype), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def transformation(module: ModuleType, hparams: Any, workload: Any) -> optax.GradientTransformation:
    """The submission's transformation with the learning rate as an injected hyperparameter (set
    from `lr_schedule` on the host each step, as the torch simple form sets each group's lr), after
    clipping to `hparams.grad_clip` when it has one."""

    def make(learning_rate):
        tx = module.make_optax(learning_rate=learning_rate, hparams=hparams, workload=workload)
        if not isinstance(tx, optax.GradientTransformation):
            raise TypeError(f"make_optax returned {type(tx).__name__}, not an optax.GradientTransformation")
        grad_clip = getattr(hparams, "grad_clip", None)
        return optax.chain(clip_by_global_norm(grad_clip), tx) if grad_clip else tx

    return optax.inject_hyperparams(make)(learning_rate=0.0)


class OptaxState:
    """An optax submission's optimizer state: the transformation, its state and the compiled train
    step. Checkpointed as the state's leaves (`state_dict` / `load_state_dict`)."""

    def __init__(self, tx: optax.GradientTransformation, params: Params, workload: Any) -> None:
        self.tx, self.workload = tx, workload
        self.opt_state = workload.backend.replicate(tx.init(params))
        self._compiled: Callable | None = None

    def _train_step(self, params: Params, opt_state: Any, batch: Batch, lr: jax.Array):
        loss, grads = jax.value_and_grad(self.workload.loss)(params, batch)
        opt_state = opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": lr})
        updates, opt_state = self.tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    def step(self, params: Params, batch: Batch, lr: float) -> tuple[Params, jax.Array]:
        """One update at learning rate `lr`: (new params, the batch's loss)."""
        lr = jnp.asarray(lr, jnp.float32)
        if self._compiled is None:  # ahead of time, so that the compile time can be reported
            start = time.perf_counter()
            step = jax.jit(self._train_step, donate_argnums=(0, 1))
            self._compiled = step.lower(params, self.opt_state, batch, lr).compile()
            self.workload.backend.compile_time_s += time.perf_counter() - start
        params, self.opt_state, loss = self._compiled(params, self.opt_state, batch, lr)
        return params, loss

    def state_dict(self) -> dict[str, Any]:
        return {"leaves": [torch.from_numpy(np.array(leaf)) for leaf in jax.tree.leaves(self.opt_state)]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        treedef = jax.tree.structure(self.opt_state)
        leaves = [leaf.numpy() for leaf in state["leaves"]]
        self.opt_state = self.workload.backend.replicate(jax.tree.unflatten(treedef, leaves))


def full_form(module: ModuleType) -> dict[str, Any]:
    """The full form of an optax submission: schedule on the host, then one jitted step
    (loss, gradients, clip, the submission's transformation, apply)."""
    def init_optimizer_state(*, workload, model_params, model_state, hyperparameters, rng):
        return OptaxState(transformation(module, hyperparameters, workload), model_params, workload)

    def update_params(*, workload, current_param_container, current_params_types, model_state,
                      hyperparameters, batch, loss_type, optimizer_state, eval_results, global_step,
                      rng, train_state=None):
        lr = module.lr_schedule(step=global_step, step_hint=workload.step_hint, hparams=hyperparameters)
        params, loss = optimizer_state.step(current_param_container, batch, lr)
        return optimizer_state, params, model_state, loss

    return {"init_optimizer_state": init_optimizer_state, "update_params": update_params,
            "data_selection": default_data_selection, "prepare_for_eval": None, "get_batch_size": None}


