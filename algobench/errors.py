"""User-facing errors: one readable line, exit code 2, no traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TrainingComplete(Exception):
    """Raised by a submission's update_params to end training after this step (AlgoPerf's
    TrainingCompleteError)."""


class UserError(Exception):
    """Bad input from the user. The CLI prints the message alone and exits with code 2."""

    exit_code = 2


def closest(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The valid choices nearest to `name`, best first (falls back to all if none is close)."""
    choices = sorted(choices)
    by_lower = {c.lower(): c for c in choices}  # `GPT2` is nearest to `gpt2`: case is ignored
    near = difflib.get_close_matches(name.lower(), list(by_lower), n=n, cutoff=0.4)
    return [by_lower[c] for c in near] or choices[:n]


def unknown(kind: str, name: str, choices: Iterable[str]) -> UserError:
    """`unknown workload 'gtp2'; did you mean: gpt2?`"""
    choices = list(choices)
    hint = ", ".join(closest(name, choices)) if choices else "(none registered)"
    return UserError(f"unknown {kind} '{name}'; did you mean: {hint}?")
