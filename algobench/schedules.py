"""Learning-rate schedules: plain functions of the step, returning the learning rate.

`step` counts the updates done before this one (0 for the first update). Warmups are linear and
give step 0 `peak_lr / warmup_steps`, so no update is wasted at lr 0. Every function is pure; a
submission's `lr_schedule` calls one with numbers derived from `step_hint` and its hparams.

- `warmup_cosine`, `warmup_linear`, `warmup_constant` (or `warmup_decay(decay=...)`): linear
  warmup, then cosine / linear / no decay.
- `warmup_stable_decay` (WSD): warmup, a constant plateau, then a short cooldown (linear, cosine or
  1-sqrt).
- `inverse_sqrt`: warmup, then peak * sqrt(warmup / step) (Vaswani et al., 2017).
- `constant`.
- `refined` with `refine_profile` / `load_grad_norms` / `refined_from_file`: the schedule refined
  from an earlier run's gradient norms (Defazio et al., 2023; see `refine_profile`).
- `rescale_lr`: a learning rate for another batch size (square-root or linear rule).
- `named(NAME, steps=...)`: every schedule above as a one-argument function, for plots.
- `SCHEDULES` / `lr_schedule(NAME, ...)`: a submission's whole `lr_schedule` in one line, e.g.
  `lr_schedule = schedules.lr_schedule("warmup_cosine", warmup="warmup_frac")`; options name the
  hparams (strings) or give constants (numbers).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from algobench.errors import UserError, unknown

DECAYS = ("cosine", "linear", "none")
COOLDOWNS = ("linear", "cosine", "sqrt")


def _warmup(step: int, peak_lr: float, warmup_steps: int) -> float:
    return peak_lr * (step + 1) / warmup_steps


def _decayed(progress: float, peak_lr: float, final_lr: float, shape: str) -> float:
    """The lr at `progress` in [0, 1] of a decay from `peak_lr` to `final_lr`."""
    if shape == "cosine":
        return final_lr + 0.5 * (peak_lr - final_lr) * (1.0 + math.cos(math.pi * progress))
    if shape == "linear":
        return peak_lr + (final_lr - peak_lr) * progress
    if shape == "sqrt":  # the 1-sqrt cooldown of Hagele et al. (2024)
        return final_lr + (peak_lr - final_lr) * (1.0 - math.sqrt(progress))
    if shape == "none":
        return peak_lr
    raise unknown("decay shape", shape, (*DECAYS, "sqrt"))


def warmup_cosine(step: int, *, peak_lr: float, warmup_steps: int, decay_steps: int,
                  final_lr_frac: float = 0.0) -> float:
    """1. linear warmup from 0 to `peak_lr` over `warmup_steps` (step 0 gets peak/warmup_steps);
    2. cosine decay to `final_lr_frac * peak_lr` over the next `decay_steps`;
    3. constant at the final value after that."""
    if step < warmup_steps:
        return _warmup(step, peak_lr, warmup_steps)
    progress = min((step - warmup_steps) / max(decay_steps, 1), 1.0)
    return _decayed(progress, peak_lr, final_lr_frac * peak_lr, "cosine")


def warmup_linear(step: int, *, peak_lr: float, warmup_steps: int, decay_steps: int,
                  final_lr_frac: float = 0.0) -> float:
    """Linear warmup, then linear decay to `final_lr_frac * peak_lr` over `decay_steps`, then
    constant (AlgoPerf's SGD baselines; the worst-case optimal schedule of Defazio et al.)."""
    if step < warmup_steps:
        return _warmup(step, peak_lr, warmup_steps)
    progress = min((step - warmup_steps) / max(decay_steps, 1), 1.0)
    return _decayed(progress, peak_lr, final_lr_frac * peak_lr, "linear")


def warmup_constant(step: int, *, peak_lr: float, warmup_steps: int) -> float:
    """Linear warmup, then `peak_lr` for ever (no decay)."""
    return _warmup(step, peak_lr, warmup_steps) if step < warmup_steps else peak_lr


def warmup_decay(step: int, *, peak_lr: float, warmup_steps: int, decay_steps: int,
                 decay: str = "cosine", final_lr_frac: float = 0.0) -> float:
    """Linear warmup then `decay` in cosine | linear | none: one function, the decay as data."""
    if decay == "cosine":
        return warmup_cosine(step, peak_lr=peak_lr, warmup_steps=warmup_steps, decay_steps=decay_steps,
                             final_lr_frac=final_lr_frac)
    if decay == "linear":
        return warmup_linear(step, peak_lr=peak_lr, warmup_steps=warmup_steps, decay_steps=decay_steps,
                             final_lr_frac=final_lr_frac)
    if decay == "none":
        return warmup_constant(step, peak_lr=peak_lr, warmup_steps=warmup_steps)
    raise unknown("decay", decay, DECAYS)


def warmup_stable_decay(step: int, *, peak_lr: float, warmup_steps: int, stable_steps: int,
                        decay_steps: int, decay: str = "linear", final_lr_frac: float = 0.0) -> float:
    """WSD (Hu et al., 2024 "MiniCPM"; Hagele et al., 2024):
    1. linear warmup over `warmup_steps`; 2. `peak_lr` for `stable_steps`;
    3. cooldown over `decay_steps` to `final_lr_frac * peak_lr` (linear, cosine or 1-sqrt);
    4. constant at the final value after that."""
    if decay not in COOLDOWNS:
        raise unknown("cooldown", decay, COOLDOWNS)
    if step < warmup_steps:
        return _warmup(step, peak_lr, warmup_steps)
    if step < warmup_steps + stable_steps:
        return peak_lr
    progress = min((step - warmup_steps - stable_steps) / max(decay_steps, 1), 1.0)
    return _decayed(progress, peak_lr, final_lr_frac * peak_lr, decay)


def inverse_sqrt(step: int, *, peak_lr: float, warmup_steps: int) -> float:
    """peak * min((step+1)/w, sqrt(w/(step+1))): linear warmup to `peak_lr` at step w-1, then
    decay as 1/sqrt(step) (the Transformer schedule of Vaswani et al., 2017, normalised to its peak)."""
    w = max(warmup_steps, 1)
    return peak_lr * min((step + 1) / w, math.sqrt(w / (step + 1)))


def constant(step: int, *, lr: float) -> float:
    """The same learning rate at every step."""
    return lr


# --- batch-size rescaling --------------------------------------------------------------------

def rescale_lr(lr: float, *, from_batch_size: int, to_batch_size: int, rule: str = "sqrt") -> float:
    """The learning rate for `to_batch_size` given a good one at `from_batch_size`.

    `sqrt` (Krizhevsky 2014; Malladi et al. 2022 for Adam): lr * sqrt(to/from).
    `linear` (Goyal et al. 2017, for SGD): lr * to/from."""
    if from_batch_size <= 0 or to_batch_size <= 0:
        raise UserError(f"batch sizes must be positive, got {from_batch_size} and {to_batch_size}")
    ratio = to_batch_size / from_batch_size
    if rule == "sqrt":
        return lr * math.sqrt(ratio)
    if rule == "linear":
        return lr * ratio
    raise unknown("batch-size rule", rule, ("sqrt", "linear"))


# --- the refined schedule of Defazio, Cutkosky, Mehta & Mishchenko (2023) ----------------------

GRAD_NORM_FORMAT = """\
a table (.parquet or .csv) of an earlier run's gradient norms, one row per logged step:
  step          int    update index, 0-based, strictly increasing (rows may skip steps: they are
                       interpolated linearly, so train.parquet-style logging every N steps works)
  grad_norm     float  l2 norm of the whole gradient at that step (> 0, finite): for norm="l2"
  grad_norm_l1  float  (optional) l1 norm of the whole gradient: needed for norm="l1" (Adam-type)
other columns are ignored; algobench.library.record_grad_norms writes this format"""


def median_smooth(values: np.ndarray, *, tau: float) -> np.ndarray:
    """The authors' smoothing: a median filter `tau * T` wide (odd), the end padded by reflection,
    the edges extended with the nearest value (scipy.ndimage.median_filter, mode='nearest')."""
    values = np.asarray(values, dtype=np.float64)
    width = 2 * (int(tau * len(values)) // 2) + 1
    if width <= 1:
        return values.copy()
    pad = 2 * width
    padded = np.pad(values, (0, pad), mode="reflect")
    half = width // 2
    extended = np.pad(padded, (half, half), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(extended, width)
    return np.median(windows, axis=1)[: len(values)]


def refine_profile(grad_norms: Sequence[float] | np.ndarray, *, tau: float = 0.1, norm: str = "l2") -> np.ndarray:
    """The refined schedule's shape over the earlier run's T steps, as multipliers in [0, 1].

    SGD-type (norm="l2", the paper's Algorithm 1 and the authors' find_closed_form_schedule):
    g = median-smoothed ||g_t||_2, w_t = g_t^-2 * sum_{p>t} g_p^-2.
    Adam-type (norm="l1", the paper's variant for coordinate-wise methods as we read it): the
    same with l1 norms and power 1, w_t = g_t^-1 * sum_{p>t} g_p^-1.
    Normalised so max(w) = 1 (the peak lr multiplies it); the last step gets 0. Large early
    gradients give the warmup, rising late ones the quick anneal."""
    g = np.asarray(grad_norms, dtype=np.float64)
    if g.ndim != 1 or len(g) < 2:
        raise UserError("a refined schedule needs the gradient norms of at least 2 steps")
    if not np.all(np.isfinite(g)) or np.any(g <= 0):
        raise UserError("gradient norms must be finite and positive")
    power = {"l2": 2.0, "l1": 1.0}.get(norm)
    if power is None:
        raise unknown("norm", norm, ("l2", "l1"))
    weights = median_smooth(g, tau=tau) ** -power
    tail = np.cumsum(weights[::-1])[::-1]  # tail[t] = sum_{p >= t} weights_p
    w = weights * np.append(tail[1:], 0.0)
    return w / w.max()


def refined(step: int, *, peak_lr: float, profile: np.ndarray, total_steps: int) -> float:
    """`peak_lr` times the refined profile, stretched from its T steps onto `total_steps` (linear
    interpolation at the same fraction of training); 0 after `total_steps`."""
    if step >= total_steps:
        return 0.0
    position = step / max(total_steps - 1, 1) * (len(profile) - 1)
    return peak_lr * float(np.interp(position, np.arange(len(profile)), profile))


def load_grad_norms(path: Path, *, column: str = "grad_norm") -> np.ndarray:
    """Per-step gradient norms (`column`) from a file in the format of `GRAD_NORM_FORMAT`,
    interpolated to every step 0..last."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise UserError(f"gradient-norm file not found: {path}")
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as err:  # pyarrow and the csv parser raise many types
        raise UserError(f"cannot read gradient norms from {path}: {str(err).splitlines()[0]}") from None
    missing = [c for c in ("step", column) if c not in frame.columns]
    if missing:
        raise UserError(f"{path} has no column {', '.join(missing)}: a gradient-norm file has columns "
                        "step (int, increasing), grad_norm (float > 0) and for l1, grad_norm_l1")
    steps = frame["step"].to_numpy()
    norms = frame[column].to_numpy(dtype=np.float64)
    if len(steps) < 2 or np.any(np.diff(steps) <= 0) or steps[0] < 0:
        raise UserError(f"{path}: 'step' must hold at least 2 increasing non-negative steps")
    if not np.all(np.isfinite(norms)) or np.any(norms <= 0):
        raise UserError(f"{path}: '{column}' must be finite and positive")
    every = np.arange(int(steps[0]), int(steps[-1]) + 1)
    return np.interp(every, steps.astype(np.float64), norms)


@functools.lru_cache(maxsize=16)  # lr_schedule may call it every step: the file is read once
def refined_from_file(path: Path, *, peak_lr: float, total_steps: int, tau: float = 0.1,
                      norm: str = "l2") -> Callable[[int], float]:
    """The refined schedule of an earlier run's gradient-norm file, as a function of the step
    (norm="l2" reads the grad_norm column, norm="l1" grad_norm_l1)."""
    column = {"l2": "grad_norm", "l1": "grad_norm_l1"}.get(norm)
    if column is None:
        raise unknown("norm", norm, ("l2", "l1"))
    profile = refine_profile(load_grad_norms(path, column=column), tau=tau, norm=norm)
    return lambda step: refined(step, peak_lr=peak_lr, profile=profile, total_steps=total_steps)


# --- a submission's lr_schedule by name ------------------------------------------------------------

SubmissionSchedule = Callable[..., float]  # lr_schedule(*, step, step_hint, hparams) -> float


def _value(hparams, option: str | float) -> float:
    """An option is the name of a hyperparameter (read from `hparams`) or a constant."""
    return getattr(hparams, option) if isinstance(option, str) else option


def _warmup_steps(hparams, step_hint: int, warmup: str | float) -> int:
    return max(int(_value(hparams, warmup) * step_hint), 1)


def _warmup_then(decay: str) -> Callable[..., SubmissionSchedule]:
    def factory(*, peak: str | float = "learning_rate", warmup: str | float = "warmup_frac",
                decay_frac: str | float = 1.0, final_lr_frac: str | float = 0.0) -> SubmissionSchedule:
        """Warmup over `warmup` * step_hint (at least 1 step), then `decay` to `final_lr_frac` of
        the peak over `decay_frac` of the remaining steps, constant after."""
        def lr_schedule(*, step: int, step_hint: int, hparams) -> float:
            warmup_steps = _warmup_steps(hparams, step_hint, warmup)
            return warmup_decay(step, peak_lr=_value(hparams, peak), warmup_steps=warmup_steps,
                                decay_steps=int(_value(hparams, decay_frac) * (step_hint - warmup_steps)),
                                decay=decay, final_lr_frac=_value(hparams, final_lr_frac))
        return lr_schedule
    return factory


def _constant(*, peak: str | float = "learning_rate") -> SubmissionSchedule:
    def lr_schedule(*, step: int, step_hint: int, hparams) -> float:
        return constant(step, lr=_value(hparams, peak))
    return lr_schedule


SCHEDULES: Mapping[str, Callable[..., SubmissionSchedule]] = {
    "warmup_cosine": _warmup_then("cosine"),
    "warmup_linear": _warmup_then("linear"),
    "warmup_constant": _warmup_then("none"),
    "constant": _constant,
}


def lr_schedule(name: str, **options) -> SubmissionSchedule:
    """The submission schedule `name` of SCHEDULES, configured by `options` (hparam names or
    constants): `lr_schedule("warmup_linear", warmup="warmup_factor", decay_frac="decay_steps_factor",
    final_lr_frac="end_factor")` is AlgoPerf's SGD schedule."""
    factory = SCHEDULES.get(name)
    if factory is None:
        raise unknown("schedule", name, SCHEDULES)
    return factory(**options)


# --- every schedule by name, for plots -----------------------------------------------------------

NAMES = ("warmup_cosine", "warmup_linear", "warmup_constant", "wsd", "inverse_sqrt", "constant", "refined")


def named(name: str, *, steps: int, peak_lr: float = 1.0, warmup_frac: float = 0.05,
          cooldown_frac: float = 0.2, final_lr_frac: float = 0.0, grad_norms: Path | None = None,
          tau: float = 0.1, norm: str = "l2") -> Callable[[int], float]:
    """Schedule `name` over a run of `steps` steps, as a function of the step. `cooldown_frac` is
    WSD's cooldown share of the run; `grad_norms` is the file the refined schedule needs."""
    if name not in NAMES:
        raise unknown("schedule", name, NAMES)
    if steps < 1:
        raise UserError(f"--steps must be at least 1, got {steps}")
    if name in SCHEDULES:  # the submissions' schedules, with constants for the hparams
        options = {"peak": peak_lr} if name == "constant" else \
            {"peak": peak_lr, "warmup": warmup_frac, "final_lr_frac": final_lr_frac}
        schedule = SCHEDULES[name](**options)
        return lambda s: schedule(step=s, step_hint=steps, hparams=None)
    warmup = max(int(warmup_frac * steps), 1)
    if name == "wsd":
        cooldown = int(cooldown_frac * steps)
        return lambda s: warmup_stable_decay(s, peak_lr=peak_lr, warmup_steps=warmup,
                                             stable_steps=max(steps - warmup - cooldown, 0),
                                             decay_steps=cooldown, final_lr_frac=final_lr_frac)
    if name == "inverse_sqrt":
        return lambda s: inverse_sqrt(s, peak_lr=peak_lr, warmup_steps=warmup)
    if grad_norms is None:
        raise UserError("the refined schedule is derived from an earlier run's gradient norms: give "
                        "--grad-norms FILE (.parquet or .csv with columns step and grad_norm)")
    return refined_from_file(grad_norms, peak_lr=peak_lr, total_steps=steps, tau=tau, norm=norm)

