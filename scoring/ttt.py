"""Time to target: from trials to one number per (submission, workload), AlgoPerf style.

A scoring "workload" is the pair (workload, size), labelled `workload/size`.
Infinity stands for "did not reach the target" everywhere and takes part in medians.

- external-tuning ruleset: a study's time is its fastest trial; the workload's time is the
  median over studies.
- self-tuning ruleset: a study is a single run; the workload's time is the median over studies.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from algobench.errors import UserError

Ruleset = Literal["external", "self"]
By = Literal["time", "steps"]
TIME_COLUMN: dict[str, str] = {"time": "time_to_target_s", "steps": "steps_to_target"}


def workload_label(workload: str, size: str) -> str:
    return f"{workload}/{size}"


def study_times(trials: pd.DataFrame, *, ruleset: Ruleset, by: By) -> pd.DataFrame:
    """One row per (submission, workload, study_key): the study's time to target.

    Columns: submission, workload (label), study_key, time, n_trials.
    """
    frame = pd.DataFrame({
        "submission": trials["submission"].astype(str),
        "workload": trials["workload"].astype(str) + "/" + trials["size"].astype(str),
        "study_key": trials["study_key"].astype(str),
        "time": trials[TIME_COLUMN[by]].astype(float),
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
    labels = trials["workload"].astype(str) + "/" + trials["size"].astype(str)
    return trials["budget_s"].astype(float).groupby(labels).max()
