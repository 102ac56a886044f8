"""From folders (or a published table) to a Scorecard: what every scoring command calls.

The checks here turn bad input into `UserError`s: mixed hardware or frameworks, mixed rulesets,
an unknown baseline, no trials at all.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from algobench.errors import UserError, unknown
from scoring.bootstrap import resample_medians
from scoring.load import Loaded, load_results, load_table
from scoring.profiles import variant_map
from scoring.score import Scorecard, scorecard
from scoring.ttt import (Ruleset, median_times, study_cells, study_counts, study_times,
                         workload_budgets)


class ScoreOptions(BaseModel):
    """The knobs shared by score, leaderboard, plot and report."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    ruleset: Literal["external", "self"] | None = None  # None: the one the trials share
    by: Literal["time", "steps"] = "time"
    tau_max: float = 4.0
    baseline: str | None = None
    n_bootstrap: int = 1000
    seed: int = 0
    variant_rule: tuple[str, ...] = ()  # VARIANT=BASE pairs, or "auto"
    allow_mixed_hardware: bool = False
    allow_mixed_frameworks: bool = False


@dataclass(frozen=True)
class Scored:
    card: Scorecard
    trials: pd.DataFrame  # the trials that were scored (empty for a table)
    loaded: Loaded | None  # None for a table
    ruleset: str | None
    n_studies: pd.DataFrame | None  # submissions x workloads
    n_reached: pd.DataFrame | None
    notes: tuple[str, ...]  # things the user should know (printed as warnings)
    hardware: tuple[str, ...]  # one line per hardware_key


def check_options(options: ScoreOptions) -> None:
    if not options.tau_max > 1:
        raise UserError(f"--tau-max must be greater than 1 (got {options.tau_max})")
    if options.n_bootstrap < 0:
        raise UserError(f"--bootstrap must be >= 0 (got {options.n_bootstrap})")
    if options.baseline is not None and options.by == "steps":
        raise UserError("--baseline counts failures at the time budget; use it with --by time")


def describe_hardware(hardware: dict) -> str:
    """`2x NVIDIA H100, torch 2.4.0` or `AMD EPYC 7B13 (16 cores), torch 2.4.0`."""
    if hardware.get("gpu"):
        device = f"{hardware.get('gpu_count', 1)}x {hardware['gpu']}"
    else:
        device = f"{hardware.get('cpu', 'unknown cpu')} ({hardware.get('cpu_count', '?')} cores)"
    torch = hardware.get("torch")
    return f"{device}, torch {torch}" if torch else device


def hardware_lines(trials: pd.DataFrame) -> tuple[str, ...]:
    lines = []
    for key, group in trials.groupby("hardware_key", sort=True):
        lines.append(f"{key}: {describe_hardware(group['hardware'].iloc[0])} "
                     f"({len(group)} trials)")
    return tuple(lines)


def refuse_mixed(trials: pd.DataFrame, *, column: str, what: str, flag: str) -> None:
    counts = Counter(trials[column])
    if len(counts) > 1:
        listed = ", ".join(f"{key} ({n} trials)" for key, n in sorted(counts.items()))
        raise UserError(f"refusing to score trials from different {what} together: {listed}; "
                        f"score them separately or pass {flag}")


def select_trials(trials: pd.DataFrame, *, options: ScoreOptions,
                  where: str) -> tuple[pd.DataFrame, Ruleset]:
    """The trials of one ruleset, after the hardware and framework checks."""
    if options.ruleset is None:
        rulesets = Counter(trials["ruleset"])
        if len(rulesets) > 1:
            listed = ", ".join(f"{key} ({n} trials)" for key, n in sorted(rulesets.items()))
            raise UserError(f"trials from both rulesets under {where}: {listed}; "
                            "pick one with --ruleset external|self")
        ruleset = next(iter(rulesets))
    else:
        ruleset = options.ruleset
        found = sorted(set(trials["ruleset"]))
        trials = trials[trials["ruleset"] == ruleset]
        if trials.empty:
            raise UserError(f"no {ruleset}-ruleset trials under {where} "
                            f"(found: {', '.join(found)})")
    if not options.allow_mixed_hardware:
        refuse_mixed(trials, column="hardware_key", what="hardware",
                     flag="--allow-mixed-hardware")
    if not options.allow_mixed_frameworks:
        refuse_mixed(trials, column="framework", what="frameworks",
                     flag="--allow-mixed-frameworks")
    return trials, ruleset


def check_baseline(baseline: str | None, submissions: list[str]) -> None:
    if baseline is not None and baseline not in submissions:
        raise unknown("baseline submission", baseline, submissions)


def score_results(roots: list[Path], *, options: ScoreOptions,
                  with_evals: bool = False) -> Scored:
    """Load every trial under `roots` and score them."""
    check_options(options)
    loaded = load_results(roots, with_evals=with_evals)
    where = ", ".join(str(root) for root in roots)
    if loaded.trials.empty:
        detail = f" ({len(loaded.unfinished)} unfinished, {len(loaded.skipped)} unreadable)"
        raise UserError(f"no finished trials found under {where}{detail}")
    trials, ruleset = select_trials(loaded.trials, options=options, where=where)
    studies = study_times(trials, ruleset=ruleset, by=options.by)
    submissions = sorted(set(studies["submission"]))
    workloads = sorted(set(studies["workload"]))
    check_baseline(options.baseline, submissions)
    n_studies, n_reached = study_counts(studies, submissions=submissions, workloads=workloads)
    notes = tuple(
        f"{s} has no trials on {w}: counted as not reached"
        for s in submissions for w in workloads if n_studies.at[s, w] == 0)
    boot = None
    if options.n_bootstrap > 0:
        cells = study_cells(studies, submissions=submissions, workloads=workloads)
        boot = resample_medians(cells, n_boot=options.n_bootstrap,
                                rng=np.random.default_rng(options.seed))
    card = scorecard(
        median_times(studies, submissions=submissions, workloads=workloads),
        boot_times=boot, tau_max=options.tau_max,
        variants=variant_map(workloads, list(options.variant_rule)),
        baseline=options.baseline, budgets=workload_budgets(trials),
        unit="s" if options.by == "time" else "steps", seed=options.seed)
    return Scored(card=card, trials=trials, loaded=loaded, ruleset=ruleset,
                  n_studies=n_studies, n_reached=n_reached, notes=notes,
                  hardware=hardware_lines(trials))


def score_table(path: Path, *, options: ScoreOptions) -> Scored:
    """Score a published time-to-target table (no studies: the interval is the point)."""
    check_options(options)
    table = load_table(path)
    submissions = list(table.times.index)
    check_baseline(options.baseline, submissions)
    budgets = table.budgets
    if options.baseline is not None and budgets is None:
        if np.isinf(table.times.to_numpy()).any():
            raise UserError(f"{path}: --baseline counts failures at the budget, but the table "
                            "has no 'budget_s' row giving each workload's budget in seconds")
        budgets = pd.Series(np.nan, index=table.times.columns)
    card = scorecard(table.times, boot_times=None, tau_max=options.tau_max,
                     variants=variant_map(list(table.times.columns), list(options.variant_rule)),
                     baseline=options.baseline, budgets=budgets, unit="s", seed=options.seed)
    return Scored(card=card, trials=pd.DataFrame(), loaded=None, ruleset=None, n_studies=None,
                  n_reached=None, notes=(), hardware=(f"as published in {path}",))
