"""AdamW with linear warmup and cosine decay: the baseline that sets the smoke targets.

Update (Loshchilov & Hutter, 2019), as torch.optim.AdamW implements it:
    theta <- theta * (1 - lr * wd)
    m <- beta1 m + (1 - beta1) g ;  v <- beta2 v + (1 - beta2) g^2
    theta <- theta - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
Weight decay applies to weights and embeddings, not to biases and norms.
"""

import torch

from algobench import schedules
from algobench.workload import param_groups

PAPER = "Decoupled Weight Decay Regularization (Loshchilov & Hutter, ICLR 2019)"

REFERENCE = ("pytorch/pytorch, torch/optim/adamw.py (torch.optim.AdamW, the installed torch; the paper's own "
             "code, loshchil/AdamW-and-SGDW, is Lua Torch7)")
EQUAL_UNDER = ("float64, the foreach implementation the submission builds against torch's single-tensor update, "
               "None gradients; tested in tests/test_reference_adaptive.py")
REFERENCE_TEST = "tests/test_reference_adaptive.py::test_adamw_equals_torch_single_tensor_adamw"
DIFFERENCES = [  # every deliberate difference from REFERENCE, with its reason
    ("make_optimizer exempts biases and norms from weight decay (algobench.workload.param_groups); the release "
     "decays every tensor it is given."),
]

HPARAMS = {
    "learning_rate": 3e-3,
    "beta1": 0.9,
    "beta2": 0.95,
    "eps": 1e-8,
    "weight_decay": 0.1,
    "warmup_frac": 0.05,
    "grad_clip": 1.0,
}

SEARCH_SPACE = {
    "learning_rate": {"min": 3e-4, "max": 1e-2, "scaling": "log"},
    "beta1": {"feasible_points": [0.9]},
    "beta2": {"min": 0.9, "max": 0.999, "scaling": "linear"},
    "weight_decay": {"min": 1e-3, "max": 0.3, "scaling": "log"},
    "warmup_frac": {"feasible_points": [0.02, 0.05, 0.1]},
}


def make_optimizer(*, model, hparams, workload) -> torch.optim.Optimizer:
    groups = param_groups(model, workload, weight_decay=hparams.weight_decay)
    return torch.optim.AdamW(groups, lr=hparams.learning_rate, betas=(hparams.beta1, hparams.beta2),
                             eps=hparams.eps, foreach=True)


def make_optax(*, learning_rate, hparams, workload):
    """The same update in JAX (`--framework jax`): optax's adamw decays as torch's does."""
    import optax

    return optax.adamw(learning_rate, b1=hparams.beta1, b2=hparams.beta2, eps=hparams.eps,
                       weight_decay=hparams.weight_decay, mask=workload.decay_mask)


lr_schedule = schedules.lr_schedule("warmup_cosine", warmup="warmup_frac")
