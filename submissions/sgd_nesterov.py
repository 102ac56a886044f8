"""SGD with Nesterov momentum: AlgoPerf's `nesterov` baseline, linear warmup then linear decay.

Update (Sutskever et al., 2013, in the form PyTorch, optax and AlgoPerf use), with
mu = 1 - one_minus_beta1 and L2 weight decay folded into the gradient as AlgoPerf's baseline does:
    g <- g + wd * theta
    b <- mu * b + g                 (b_1 = g_1)
    theta <- theta - lr * (g + mu * b)
Paper notation: v_{t+1} = mu v_t - eps_t grad f(theta_t + mu v_t), theta_{t+1} = theta_t + v_{t+1}.
With a constant lr the two are the same sequence up to the change of variable theta' = theta + mu v
and b = -v / lr; under a schedule the code's form multiplies the whole momentum by the current lr
(the convention of every framework, and of AlgoPerf's baseline). Schedule (AlgoPerf's): warmup
over warmup_factor * step_hint, then linear decay to end_factor * lr over decay_steps_factor of the
remaining steps, constant after. Differences: warmup starts at lr/warmup_steps, not 0; weight decay
skips biases and norms (AlgoPerf decays every parameter).
"""

import torch

from algobench import schedules
from algobench.workload import param_groups

PAPER = ("On the importance of initialization and momentum in deep learning (Sutskever et al., 2013); "
         "AlgoPerf baseline (Dahl et al., 2023)")

REFERENCE = ("pytorch/pytorch, torch/optim/sgd.py (torch.optim.SGD, nesterov=True): "
             "mlcommons/algorithmic-efficiency's nesterov baseline calls it")
EQUAL_UNDER = ("float64, the foreach implementation against torch's single-tensor SGD, L2 weight decay in the "
               "gradient, None gradients; tested in tests/test_reference_adaptive.py")
REFERENCE_TEST = "tests/test_reference_adaptive.py::test_sgd_baselines_equal_torch_single_tensor_sgd"
DIFFERENCES = [  # every deliberate difference from REFERENCE, with its reason
    "Warmup starts at lr / warmup_steps on step 0, not at 0 as AlgoPerf's schedule.",
    "Weight decay skips biases and norms (algobench.workload.param_groups); AlgoPerf's baseline decays every tensor.",
]

HPARAMS = {
    "learning_rate": 0.25,
    "one_minus_beta1": 0.1,
    "weight_decay": 1e-5,
    "warmup_factor": 0.05,
    "decay_steps_factor": 0.9,
    "end_factor": 0.01,
    "grad_clip": 1.0,
}

SEARCH_SPACE = {  # AlgoPerf's nesterov search space
    "learning_rate": {"min": 2e-2, "max": 5.0, "scaling": "log"},
    "one_minus_beta1": {"min": 5e-3, "max": 0.3, "scaling": "log"},
    "weight_decay": {"min": 1e-7, "max": 5e-5, "scaling": "log"},
    "warmup_factor": {"feasible_points": [0.05]},
    "decay_steps_factor": {"feasible_points": [0.9]},
    "end_factor": {"feasible_points": [1e-3, 1e-2]},
}

def make_optimizer(*, model, hparams, workload) -> torch.optim.Optimizer:
    groups = param_groups(model, workload, weight_decay=hparams.weight_decay)
    return torch.optim.SGD(groups, lr=hparams.learning_rate, momentum=1.0 - hparams.one_minus_beta1,
                           nesterov=True, foreach=True)


lr_schedule = schedules.lr_schedule("warmup_linear", warmup="warmup_factor", decay_frac="decay_steps_factor",
                                    final_lr_frac="end_factor")
