"""From folders (or a published table) to a Scorecard: what every scoring command calls.

The checks here turn bad input into `UserError`s: mixed hardware or frameworks, mixed rulesets,
contended trials, trials of one workload run with different settings, an unknown baseline, no
trials at all. Each names what it found and the flag that accepts it.
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
from scoring.ttt import (Ruleset, median_times, study_cells, study_counts, study_times, unrefined,
                         trial_labels, workload_budgets)

NAMED = 5  # trials named in one error line before "and N more"


class ScoreOptions(BaseModel):
    """The knobs shared by score, leaderboard, plot and report."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    ruleset: Literal["external", "self"] | None = None  # None: the one the trials share
    by: Literal["time", "steps"] = "time"
    clock: Literal["refined", "eval"] = "refined"  # refined crossing, or AlgoPerf's eval-based time
    tau_max: float = 4.0
    tau_points: int | None = None  # None: exact area; N: AlgoPerf's trapezoid rule on N points
    baseline: str | None = None
    n_bootstrap: int = 1000
    seed: int = 0
    variant_rule: tuple[str, ...] = ()  # VARIANT=BASE pairs, or "auto"
    allow_mixed_hardware: bool = False
    allow_mixed_frameworks: bool = False
    allow_contended: bool = False
    allow_overrides: bool = False


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
    clock: str | None = None  # "refined" or "eval"; None for a published table
    n_unrefined: int = 0  # reached trials without a refined crossing, scored by their eval time
    contended: pd.DataFrame | None = None  # the contended trials ranked (CONTENDED_COLUMNS)
    settings: pd.DataFrame | None = None  # per workload: budget and overrides (SETTINGS_COLUMNS)

    def contended_count(self, submission: str, workload: str | None = None) -> int:
        """How many of the scored trials of `submission` (on `workload`) were contended."""
        if self.contended is None or self.contended.empty:
            return 0
        here = self.contended["submission"] == submission
        if workload is not None:
            here &= self.contended["workload"] == workload
        return int(here.sum())


def plural(n: int, noun: str) -> str:
    """`1 trial`, `2 trials`."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


CONTENDED_COLUMNS = ["trial_id", "submission", "workload", "why"]
SETTINGS_COLUMNS = ["workload", "budget_s", "settings", "trials"]


def check_options(options: ScoreOptions) -> None:
    if not options.tau_max > 1:
        raise UserError(f"--tau-max must be greater than 1 (got {options.tau_max})")
    if options.n_bootstrap < 0:
        raise UserError(f"--bootstrap must be >= 0 (got {options.n_bootstrap})")
    if options.tau_points is not None and options.tau_points < 2:
        raise UserError(f"--tau-points needs at least 2 points (got {options.tau_points}); "
                        "AlgoPerf uses 100")
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
                     f"({plural(len(group), 'trial')})")
    return tuple(lines)


def refuse_mixed(trials: pd.DataFrame, *, column: str, what: str, flag: str) -> None:
    counts = Counter(trials[column])
    if len(counts) > 1:
        listed = ", ".join(f"{key} ({plural(n, 'trial')})" for key, n in sorted(counts.items()))
        raise UserError(f"refusing to score trials from different {what} together: {listed}; "
                        f"score them separately or pass {flag}")


def select_trials(trials: pd.DataFrame, *, options: ScoreOptions,
                  where: str) -> tuple[pd.DataFrame, Ruleset]:
    """The trials of one ruleset, after the hardware and framework checks."""
    if options.ruleset is None:
        rulesets = Counter(trials["ruleset"])
        if len(rulesets) > 1:
            listed = ", ".join(f"{key} ({plural(n, 'trial')})" for key, n in sorted(rulesets.items()))
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
    if not options.allow_contended:
        refuse_contended(trials)
    if not options.allow_overrides:
        refuse_mixed_settings(trials)
    return trials, ruleset


def named(items: list[str]) -> str:
    more = f" and {len(items) - NAMED} more" if len(items) > NAMED else ""
    return ", ".join(items[:NAMED]) + more


def contention_why(contention: dict | None) -> str:
    """`run queue 3.9 on 2 cores`, `2 other GPU processes`, or both."""
    if not contention:
        return "contended"
    parts = []
    queue, cores = contention.get("run_queue_mean"), contention.get("cpu_count")
    if queue is not None and cores is not None and queue > cores:
        parts.append(f"run queue {queue:.1f} on {cores} cores")
    elif contention.get("load_avg_max") is not None and cores is not None:
        parts.append(f"load {contention['load_avg_max']:.1f} on {cores} cores")
    if contention.get("other_gpu_processes"):
        parts.append(f"{contention['other_gpu_processes']} other GPU process(es)")
    return ", ".join(parts) or "contended"


def contended_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials whose summary says `contention.contended` (CONTENDED_COLUMNS)."""
    mask = trials["contended"].map(lambda value: value is True).astype(bool)
    rows = trials[mask]
    return pd.DataFrame({
        "trial_id": rows["trial_id"].astype(str),
        "submission": rows["submission"].astype(str),
        "workload": trial_labels(rows),
        "why": rows["contention"].map(contention_why),
    }, columns=CONTENDED_COLUMNS).reset_index(drop=True)


def refuse_contended(trials: pd.DataFrame) -> None:
    found = contended_trials(trials)
    if found.empty:
        return
    listed = named([f"{r.submission} on {r.workload} ({r.trial_id}: {r.why})"
                    for r in found.itertuples(index=False)])
    raise UserError(f"refusing to rank {len(found)} contended trial(s), run while the machine was "
                    f"busy: {listed}; rerun them on an idle machine or pass --allow-contended")


def workload_settings(trials: pd.DataFrame) -> pd.DataFrame:
    """Per workload label: its budgets (s), its settings (`default` or the overrides), trials."""
    rows = []
    for label, group in trials.groupby(trial_labels(trials), sort=True):
        budgets = sorted(set(group["budget_s"].astype(float)))
        rows.append({"workload": label, "budget_s": tuple(budgets),
                     "settings": tuple(sorted(set(group["settings"]))), "trials": len(group)})
    return pd.DataFrame(rows, columns=SETTINGS_COLUMNS)


def refuse_mixed_settings(trials: pd.DataFrame) -> None:
    """One workload's trials must share their settings: a shorter budget or another batch size
    is another benchmark, and ranking it with default trials would say nothing."""
    problems = []
    for label, group in trials.groupby(trial_labels(trials), sort=True):
        kinds = group.groupby("settings", sort=True)
        if len(kinds) < 2:
            continue
        listed = "; ".join(
            f"{setting} ({len(part)} trial(s): {named(sorted(set(part['submission'])))})"
            for setting, part in kinds)
        problems.append(f"{label}: {listed}")
    if problems:
        raise UserError("refusing to rank trials run with different settings together: "
                        + " | ".join(problems)
                        + "; score them separately or pass --allow-overrides")


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
    studies = study_times(trials, ruleset=ruleset, by=options.by, clock=options.clock)
    submissions = sorted(set(studies["submission"]))
    workloads = sorted(set(studies["workload"]))
    check_baseline(options.baseline, submissions)
    n_studies, n_reached = study_counts(studies, submissions=submissions, workloads=workloads)
    notes = [f"{s} has no trials on {w}: counted as not reached"
             for s in submissions for w in workloads if n_studies.at[s, w] == 0]
    n_unrefined = len(unrefined(trials)) if options.clock == "refined" else 0
    if n_unrefined:
        notes.append(f"{n_unrefined} trial(s) reached the target without a refined crossing "
                     "(results from before schema 2): scored by their eval-based time")
    contended = contended_trials(trials)
    if not contended.empty:
        notes.append(f"{len(contended)} contended trial(s) ranked (--allow-contended): "
                     + named([f"{r.submission} on {r.workload} ({r.why})"
                              for r in contended.itertuples(index=False)]))
    boot = None
    if options.n_bootstrap > 0:
        cells = study_cells(studies, submissions=submissions, workloads=workloads)
        boot = resample_medians(cells, n_boot=options.n_bootstrap,
                                rng=np.random.default_rng(options.seed))
    card = scorecard(
        median_times(studies, submissions=submissions, workloads=workloads),
        boot_times=boot, tau_max=options.tau_max, tau_points=options.tau_points,
        variants=variant_map(workloads, list(options.variant_rule)),
        baseline=options.baseline, budgets=workload_budgets(trials),
        unit="s" if options.by == "time" else "steps", seed=options.seed)
    return Scored(card=card, trials=trials, loaded=loaded, ruleset=ruleset,
                  n_studies=n_studies, n_reached=n_reached, notes=tuple(notes),
                  hardware=hardware_lines(trials), clock=options.clock, n_unrefined=n_unrefined,
                  contended=contended, settings=workload_settings(trials))


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
                     tau_points=options.tau_points,
                     variants=variant_map(list(table.times.columns), list(options.variant_rule)),
                     baseline=options.baseline, budgets=budgets, unit="s", seed=options.seed)
    return Scored(card=card, trials=pd.DataFrame(), loaded=None, ruleset=None, n_studies=None,
                  n_reached=None, notes=(), hardware=(f"as published in {path}",))
