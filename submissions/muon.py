"""Muon: momentum orthogonalized by Newton-Schulz for hidden weight matrices, AdamW for the rest.

Keller Jordan's Muon (blog post and KellerJordan/Muon, `muon.py`), for each hidden matrix W with
gradient G (the paper's names -> the code's):
    B_t = mu B_{t-1} + (1 - mu) G_t            (momentum_buffer; `momentum` = mu, lerp form)
    M_t = mu B_t + (1 - mu) G_t                (Nesterov; M_t = B_t when `nesterov` is off)
    O_t = NewtonSchulz5(M_t) ~ U V^T           (`ns_steps` quintic iterations, coefficients
                                                (3.4445, -4.7750, 2.0315), on M / ||M||_F)
    W  <- W (1 - lr wd) - lr sqrt(max(1, rows / cols)) O_t
Conv filters are flattened to (out, in * kh * kw) (unlike the reference, which takes a filter's
aspect ratio from its last two dims, we take it from the flattened matrix). Everything else
(embeddings, norms, biases, the output head; chosen from `workload.param_types`, see
submissions/_matrix.py) uses the reference code's `adam_update` with decoupled decay: m, v with
betas (beta1, beta2), bias-corrected, eps after the square root,
    W <- W (1 - lr_adam wd) - lr_adam m_hat / (sqrt(v_hat) + eps).

Learning rates: `learning_rate` is Muon's (the README's 0.02); AdamW's is `adam_learning_rate`,
both follow the same warmup-cosine schedule (AdamW's group has `lr_scale` = adam/muon lr).
Deliberate differences from the reference code: same-shaped matrices are orthogonalized in one
batched call (same result); off GPU the iteration runs in the parameter dtype instead of bfloat16;
the reference's distributed all-gather is not needed in one process. A parameter whose gradient is
None steps with a zero gradient, as the reference's `p.grad = torch.zeros_like(p)` (momentum decays
and is still applied, weight decay applies), in the Muon and the AdamW groups.
"""

import torch

from algobench import schedules
from submissions._matrix import MatrixMomentum, newton_schulz, split_groups

PAPER = "Muon: An optimizer for hidden layers in neural networks (Jordan et al., 2024)"

REFERENCE = "KellerJordan/Muon, muon.py (SingleDeviceMuonWithAuxAdam, muon_update, adam_update; commit 00ba60d)"
EQUAL_UNDER = ("float64 (the release's bfloat16 Newton-Schulz cast replaced by float64), nesterov on and off, "
               "three hidden-matrix shapes (two alike: the batched path), a conv filter, None gradients (as zeros"
               " in both); tested in tests/test_reference_matrix.py")
REFERENCE_TEST = "tests/test_reference_matrix.py::test_muon_equals_keller_jordans_single_device_muon_with_aux_adam"
DIFFERENCES = [  # every deliberate difference from REFERENCE, with its reason
    ("Off GPU the Newton-Schulz iteration runs in the parameters' dtype; the release always casts to bfloat16 (so"
     " does this on GPU)."),
    ("A conv filter's aspect-ratio scale is sqrt(max(1, rows/cols)) of its flattened (out, in*kh*kw) matrix; the "
     "release takes grad.size(-2) / grad.size(-1) of the 4-D tensor (kh / kw). Equal for 2-D matrices."),
    "Same-shaped matrices are orthogonalized in one batched call: the same numbers.",
    "The release's distributed all-gather is not needed: each process updates every matrix.",
]

HPARAMS = {
    "learning_rate": 0.02,
    "momentum": 0.95,
    "nesterov": True,
    "ns_steps": 5,
    "weight_decay": 0.01,
    "adam_learning_rate": 3e-3,
    "adam_beta1": 0.9,
    "adam_beta2": 0.95,
    "adam_eps": 1e-10,
    "warmup_frac": 0.02,
}

SEARCH_SPACE = {
    "learning_rate": {"min": 5e-3, "max": 0.1, "scaling": "log"},
    "momentum": {"feasible_points": [0.9, 0.95]},
    "weight_decay": {"min": 1e-3, "max": 0.1, "scaling": "log"},
    "adam_learning_rate": {"min": 1e-3, "max": 1e-2, "scaling": "log"},
    "warmup_frac": {"feasible_points": [0.0, 0.02, 0.05]},
}


def make_optimizer(*, model, hparams, workload) -> torch.optim.Optimizer:
    groups = split_groups(model, workload, weight_decay=hparams.weight_decay, adam_weight_decay=hparams.weight_decay,
                          adam_lr_scale=hparams.adam_learning_rate / hparams.learning_rate)
    steps = hparams.ns_steps
    return MatrixMomentum(groups, direction=lambda M: newton_schulz(M, steps), lr=hparams.learning_rate,
                          momentum=hparams.momentum, nesterov=hparams.nesterov,
                          betas=(hparams.adam_beta1, hparams.adam_beta2), eps=hparams.adam_eps,
                          zero_missing_grads=True)


lr_schedule = schedules.lr_schedule("warmup_cosine", warmup="warmup_frac")
