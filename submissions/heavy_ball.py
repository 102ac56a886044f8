"""SGD with heavy-ball momentum: AlgoPerf's `momentum` baseline, linear warmup then linear decay.

Update (Polyak, 1964, in the form PyTorch, optax and AlgoPerf use), with mu = 1 - one_minus_beta1
and L2 weight decay folded into the gradient as AlgoPerf's baseline does:
    g <- g + wd * theta
    b <- mu * b + g                 (b_1 = g_1)
    theta <- theta - lr * b
Paper notation: theta_{t+1} = theta_t - alpha grad f(theta_t) + beta (theta_t - theta_{t-1}),
i.e. beta = mu, alpha = lr, and theta_t - theta_{t-1} = -lr * b_{t-1}: the same sequence while the
lr is constant; under a schedule the code's form multiplies the whole momentum by the current lr
(every framework's convention, and AlgoPerf's). Schedule as AlgoPerf's baseline: warmup over
warmup_factor * step_hint, linear decay to end_factor * lr over decay_steps_factor of the rest,
constant after. Differences: warmup starts at lr/warmup_steps, not 0; weight decay skips biases
and norms (AlgoPerf decays every parameter).
"""

import torch

from algobench.workload import param_groups
from submissions.sgd_nesterov import (  # AlgoPerf's, shared by both baselines
    HPARAMS,
    SEARCH_SPACE,
    lr_schedule,
)

__all__ = ["DIFFERENCES", "EQUAL_UNDER", "HPARAMS", "PAPER", "REFERENCE", "REFERENCE_TEST", "SEARCH_SPACE",
           "lr_schedule", "make_optimizer"]

PAPER = ("Some methods of speeding up the convergence of iteration methods (Polyak, 1964); "
         "AlgoPerf baseline (Dahl et al., 2023)")

REFERENCE = ("pytorch/pytorch, torch/optim/sgd.py (torch.optim.SGD, nesterov=False): "
             "mlcommons/algorithmic-efficiency's momentum baseline calls it")
EQUAL_UNDER = ("float64, the foreach implementation against torch's single-tensor SGD, L2 weight decay in the "
               "gradient, None gradients; tested in tests/test_reference_adaptive.py")
REFERENCE_TEST = "tests/test_reference_adaptive.py::test_sgd_baselines_equal_torch_single_tensor_sgd"
DIFFERENCES = [  # every deliberate difference from REFERENCE, with its reason
    "Warmup starts at lr / warmup_steps on step 0, not at 0 as AlgoPerf's schedule.",
    "Weight decay skips biases and norms (algobench.workload.param_groups); AlgoPerf's baseline decays every tensor.",
]


def make_optimizer(*, model, hparams, workload) -> torch.optim.Optimizer:
    groups = param_groups(model, workload, weight_decay=hparams.weight_decay)
    return torch.optim.SGD(groups, lr=hparams.learning_rate, momentum=1.0 - hparams.one_minus_beta1,
                           nesterov=False, foreach=True)

