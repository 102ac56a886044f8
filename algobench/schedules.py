"""Learning-rate schedules: plain functions of the step, returning the learning rate."""

from __future__ import annotations

import math


def warmup_cosine(step: int, *, peak_lr: float, warmup_steps: int, decay_steps: int,
                  final_lr_frac: float = 0.0) -> float:
    """1. linear warmup from 0 to `peak_lr` over `warmup_steps` (step 0 gets peak/warmup_steps);
    2. cosine decay to `final_lr_frac * peak_lr` over the next `decay_steps`;
    3. constant at the final value after that."""
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = min((step - warmup_steps) / max(decay_steps, 1), 1.0)
    final = final_lr_frac * peak_lr
    return final + 0.5 * (peak_lr - final) * (1.0 + math.cos(math.pi * progress))
