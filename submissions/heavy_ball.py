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

__all__ = ["HPARAMS", "PAPER", "SEARCH_SPACE", "lr_schedule", "make_optimizer"]

PAPER = ("Some methods of speeding up the convergence of iteration methods (Polyak, 1964); "
         "AlgoPerf baseline (Dahl et al., 2023)")


def make_optimizer(*, model, hparams, workload) -> torch.optim.Optimizer:
    groups = param_groups(model, workload, weight_decay=hparams.weight_decay)
    return torch.optim.SGD(groups, lr=hparams.learning_rate, momentum=1.0 - hparams.one_minus_beta1,
                           nesterov=False, foreach=True)

