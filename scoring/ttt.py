"""Time to target: from trials to one number per (submission, workload), AlgoPerf style.

A scoring "workload" is the pair (workload, size), labelled `workload/size`.
Infinity stands for "did not reach the target" everywhere and takes part in medians.

- external-tuning ruleset: a study's time is its fastest trial; the workload's time is the
  median over studies.
- self-tuning ruleset: a study is a single run; the workload's time is the median over studies.

Which time: `clock="refined"` (the default) takes a trial's refined crossing, the first parameter
snapshot between evals that meets the target; a trial without one (schema-1 results, written
before the runner refined) falls back to its eval-based time. `clock="eval"` takes AlgoPerf's
eval-based time to target (`time_to_target_s`) for every trial.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from algobench.errors import UserError

Ruleset = Literal["external", "self"]
By = Literal["time", "steps"]
Clock = Literal["refined", "eval"]
EVAL_COLUMN: dict[str, str] = {"time": "time_to_target_s", "steps": "steps_to_target"}
REFINED_COLUMN: dict[str, str] = {"time": "refined_time_to_target_s", "steps": "refined_steps_to_target"}


def trial_times(trials: pd.DataFrame, *, by: By, clock: Clock) -> pd.Series:
    """Each trial's time (or steps) to target under `clock`; inf = not reached."""
    eval_based = trials[EVAL_COLUMN[by]].astype(float)
    if clock == "eval":
        return eval_based
    refined = trials[REFINED_COLUMN[by]].astype(float)
    return refined.where(np.isfinite(refined), eval_based)


def unrefined(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials that reached the target but carry no refined crossing (they fall back)."""
    reached = np.isfinite(trials["time_to_target_s"].astype(float))
    return trials[reached & ~np.isfinite(trials["refined_time_to_target_s"].astype(float))]


def trial_labels(trials: pd.DataFrame) -> pd.Series:
    """Each trial's workload label, `workload/size`."""
    return trials["workload"].astype(str) + "/" + trials["size"].astype(str)


def study_times(trials: pd.DataFrame, *, ruleset: Ruleset, by: By,
                clock: Clock = "refined") -> pd.DataFrame:
    """One row per (submission, workload, study_key): the study's time to target.

    Columns: submission, workload (label), study_key, time, n_trials.
    """
    frame = pd.DataFrame({
        "submission": trials["submission"].astype(str),
        "workload": trial_labels(trials),
        "study_key": trials["study_key"].astype(str),
        "time": trial_times(trials, by=by, clock=clock),
    })
    keys = ["submission", "workload", "study_key"]
    studies = (frame.groupby(keys, sort=True)["time"]
               .agg(time="min", n_trials="size").reset_index())
    if ruleset == "self":
        crowded = studies[studies["n_trials"] > 1]
        if not crowded.empty:
            first = crowded.iloc[0]
            raise UserError(
                f"self-tuning study '{first['study_key']}' of {first['submission']} on "
                f"{first['workload']} has {first['n_trials']} trials; a self-tuning study is a "
                "single run (did you mean --ruleset external?)")
    return studies


def median_times(studies: pd.DataFrame, *, submissions: list[str],
                 workloads: list[str]) -> pd.DataFrame:
    """Submissions x workloads: the median over studies; no study at all counts as infinity."""
    medians = studies.groupby(["submission", "workload"])["time"].median()
    wide = medians.unstack("workload").reindex(index=submissions, columns=workloads)
    wide.index.name, wide.columns.name = "submission", "workload"
    return wide.fillna(np.inf).astype(float)


def study_counts(studies: pd.DataFrame, *, submissions: list[str],
                 workloads: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(number of studies, number of studies that reached the target), submissions x workloads."""
    grouped = studies.assign(reached=np.isfinite(studies["time"])).groupby(
        ["submission", "workload"])
    shape = {"index": submissions, "columns": workloads, "fill_value": 0}
    n_studies = grouped.size().unstack("workload").reindex(**shape).astype(int)
    n_reached = grouped["reached"].sum().unstack("workload").reindex(**shape).astype(int)
    return n_studies, n_reached


def study_cells(studies: pd.DataFrame, *, submissions: list[str],
                workloads: list[str]) -> list[list[np.ndarray]]:
    """cells[s][w]: the per-study times of submission s on workload w (maybe empty)."""
    grouped = {key: group["time"].to_numpy(dtype=float)
               for key, group in studies.groupby(["submission", "workload"], sort=False)}
    empty = np.empty(0, dtype=float)
    return [[grouped.get((s, w), empty) for w in workloads] for s in submissions]


def workload_budgets(trials: pd.DataFrame) -> pd.Series:
    """The runtime budget (s) of each workload label: the largest any of its trials had."""
    return trials["budget_s"].astype(float).groupby(trial_labels(trials)).max()
