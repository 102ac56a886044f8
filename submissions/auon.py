"""AuON: unit-norm momentum updates by normalized hyperbolic-cosine scaling (Maity, 2025), AdamW
for the rest.

AuON (arXiv 2509.24320, v1; code ryyzn9/AuON, `Auon_Adam_train.py`) replaces Muon's
Newton-Schulz orthogonalization by a linear-time map. For each hidden matrix W (N entries):
    B_t = mu B_{t-1} + (1 - mu) G_t            (momentum_buffer; `momentum` = mu)
    M_t = mu B_t + (1 - mu) G_t                (Nesterov, as in Muon)
    X_t = M_t / (||M_t||_F + 1e-7)             (unit Frobenius norm: spectral norm <= 1)
    U_t = X_t / (sqrt(mean_ij cosh(X_t)^2) + 1e-8)
                                               (the cosh-RMS "brake": entries much larger than the
                                                rest raise the RMS and shrink the whole update)
    W  <- W (1 - lr wd) - lr sqrt(max(1, rows / cols)) U_t
Hybrid-AuON (`ns_steps` > 0) applies that many Newton-Schulz iterations (Muon's quintic) to M_t
first and then the same normalization and cosh-RMS scaling. Embeddings, norms, biases and the
head use AdamW exactly as in submissions/muon.py.

Deliberate differences, documented: the later packaged `auon/optimizer.py` divides the raw
momentum (not X_t) by the RMS of cosh(gamma X_t), which makes the step size follow the gradient
scale; we follow the paper's v1 and its training script (unit-norm numerator). The reference runs
the map in bfloat16; we run it in the parameter dtype (it is elementwise and cheap). Decoupled
weight decay (lr * wd) on the matrices is the packaged optimizer's.

Defaults: Hybrid-AuON (`ns_steps` = 1) at lr 0.1 trained the GPT-2 smoke workload best (200 steps:
val_loss 4.58; plain AuON 4.73 at lr 0.05, 4.78 at 0.1, 5.04 at 0.2; Muon 3.81); plain AuON
(`ns_steps` = 0, the paper's main method) is in the search space.
"""

import torch

from algobench import schedules
from submissions._matrix import MatrixMomentum, newton_schulz, split_groups

PAPER = "AuON: A Linear-time Alternative to Semi-Orthogonal Momentum Updates (Maity, 2025)"

REFERENCE = "ryyzn9/AuON, Auon_Adam_train.py (class auon with torch.optim.AdamW for the rest; commit c87b862)"
EQUAL_UNDER = ("float64 (the release's bfloat16 cast replaced by float64), ns_steps=0, weight_decay=0 on the "
               "hidden matrices, AdamW betas (0.9, 0.999), eps 1e-8 as torch's defaults, nesterov on and off, "
               "None gradients on matrices; tested in tests/test_reference_matrix.py")
REFERENCE_TEST = "tests/test_reference_matrix.py::test_auon_equals_the_auon_training_script"
DIFFERENCES = [  # every deliberate difference from REFERENCE, with its reason
    ("Hybrid-AuON (ns_steps > 0, the default 1) follows the paper: the script ignores its Newton-Schulz steps, so"
     " there is no released code for it."),
    ("Decoupled weight decay lr * wd on the hidden matrices; the script's auon has none (weight_decay=0 gives its"
     " update)."),
    "The direction map runs in the parameters' dtype; the script casts to bfloat16.",
    ("A conv filter's aspect-ratio scale is taken from its flattened (out, in*kh*kw) matrix; the script takes "
     "p.size(-2) / p.size(-1)."),
    "The AdamW groups count steps per group (torch's AdamW: per tensor).",
]

HPARAMS = {
    "learning_rate": 0.1,
    "momentum": 0.95,
    "nesterov": True,
    "ns_steps": 1,
    "weight_decay": 0.01,
    "adam_learning_rate": 3e-3,
    "adam_beta1": 0.9,
    "adam_beta2": 0.95,
    "adam_eps": 1e-10,
    "warmup_frac": 0.02,
}

SEARCH_SPACE = {
    "learning_rate": {"min": 0.03, "max": 0.5, "scaling": "log"},
    "momentum": {"feasible_points": [0.9, 0.95]},
    "ns_steps": {"feasible_points": [0, 1]},
    "weight_decay": {"min": 1e-3, "max": 0.1, "scaling": "log"},
    "adam_learning_rate": {"min": 1e-3, "max": 1e-2, "scaling": "log"},
    "warmup_frac": {"feasible_points": [0.0, 0.02, 0.05]},
}


def cosh_rms_direction(M: torch.Tensor, ns_steps: int = 0) -> torch.Tensor:
    """U = X / (RMS(cosh X) + 1e-8) with X = M / ||M||_F, per matrix of the batch (k, rows, cols)."""
    if ns_steps:
        M = newton_schulz(M, ns_steps)
    X = M / (M.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    rms = torch.cosh(X).square().mean(dim=(-2, -1), keepdim=True).sqrt()
    return X / (rms + 1e-8)


def make_optimizer(*, model, hparams, workload) -> torch.optim.Optimizer:
    groups = split_groups(model, workload, weight_decay=hparams.weight_decay, adam_weight_decay=hparams.weight_decay,
                          adam_lr_scale=hparams.adam_learning_rate / hparams.learning_rate)
    steps = hparams.ns_steps
    return MatrixMomentum(groups, direction=lambda M: cosh_rms_direction(M, steps), lr=hparams.learning_rate,
                          momentum=hparams.momentum, nesterov=hparams.nesterov,
                          betas=(hparams.adam_beta1, hparams.adam_beta2), eps=hparams.adam_eps)


lr_schedule = schedules.lr_schedule("warmup_cosine", warmup="warmup_frac")
