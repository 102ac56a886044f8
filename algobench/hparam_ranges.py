"""The valid range of every hyperparameter name the shipped submissions use, declared once.

A value outside its range is a user error (one line naming the source, the name, the range and the
value) before anything trains: `grad_clip: -1` would otherwise flip the gradient and train
silently. Names not listed here are only checked for being finite numbers. A submission may widen
or add ranges with a module-level `HPARAM_RANGES = {"name": Range(...)}`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from algobench.errors import UserError


@dataclass(frozen=True)
class Range:
    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False  # lo itself is not allowed
    hi_open: bool = False
    integer: bool = False
    nullable: bool = False  # None (null) is allowed and means "off"

    def contains(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.integer and value != int(value):
            return False
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below

    def __str__(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        if self.lo == -math.inf and self.hi == math.inf:
            text = kind
        elif self.hi == math.inf:
            text = f"{kind} {'>' if self.lo_open else '>='} {self.lo:g}"
        else:
            text = (f"{kind} in {'(' if self.lo_open else '['}{self.lo:g}, "
                    f"{self.hi:g}{')' if self.hi_open else ']'}")
        return text + (" or null (off)" if self.nullable else "")


POSITIVE = Range(0.0, lo_open=True)
NON_NEGATIVE = Range(0.0)
DECAY = Range(0.0, 1.0, hi_open=True)  # an exponential-average coefficient: beta, momentum
FRACTION = Range(0.0, 1.0)
COUNT = Range(1, integer=True)
UNLISTED = Range()  # a name without a declared range: any finite number

RANGES: dict[str, Range] = {
    "learning_rate": POSITIVE, "adam_learning_rate": POSITIVE, "state_free_lr_scale": POSITIVE,
    "beta1": DECAY, "beta2": DECAY, "beta3": DECAY, "adam_beta1": DECAY, "adam_beta2": DECAY,
    "momentum": DECAY, "theta": DECAY, "gamma1": DECAY, "gamma2": DECAY, "stat_decay": DECAY,
    "one_minus_beta1": Range(0.0, 1.0, lo_open=True),
    "eps": POSITIVE, "adam_eps": POSITIVE,
    "weight_decay": NON_NEGATIVE, "wd_ratio": NON_NEGATIVE, "weight_lr_power": NON_NEGATIVE,
    "grad_clip": Range(0.0, nullable=True), "clip_value": Range(0.0, nullable=True),  # (0 or null: off)
    "warmup_frac": FRACTION, "warmup_factor": FRACTION, "freeze_frac": Range(0.0, 1.0, hi_open=True),
    "decay_steps_factor": Range(0.0, 1.0, lo_open=True), "end_factor": FRACTION,
    "density": Range(0.0, 1.0, lo_open=True), "delta": FRACTION, "r": NON_NEGATIVE,
    "rho": POSITIVE, "reset_threshold": POSITIVE, "stabilization": FRACTION,
    "hybrid_min_decrease": NON_NEGATIVE, "label_smoothing": Range(0.0, 1.0, hi_open=True),
    "dropout_rate": Range(0.0, 1.0, hi_open=True, nullable=True),
    "hessian_interval": COUNT, "inv_freq": COUNT, "reset_interval": COUNT, "update_gap": COUNT,
    "ns_steps": Range(0, integer=True), "hybrid_window": Range(0, integer=True),  # (0: the pure method)
}


def check(values: Mapping[str, Any], *, source: str, extra: Mapping[str, Range] | None = None) -> None:
    """Raise a UserError for the first value outside its declared range."""
    ranges = {**RANGES, **(extra or {})}
    for name, value in values.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number and (name not in ranges or isinstance(value, (bool, str)) or callable(value)):
            continue  # options, names, schedules, lists: the submission's own business
        rule = ranges.get(name, UNLISTED)
        if not rule.contains(value):
            raise UserError(f"{source}: {name} must be {rule}, got {value!r}")
