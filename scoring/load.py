"""Read results into tidy DataFrames: the only module of `scoring` that touches files.

Two sources:
- trial folders laid out as in results/README.md (`load_results`);
- a published time-to-target table in CSV (`load_table`).

A corrupt, partial or foreign file never stops loading: it is skipped and listed in
`Loaded.skipped` with its path and the reason, so the command can warn about it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from algobench.errors import UserError
from algobench.layout import EVALS, SUMMARY, TRIAL_FILES, Summary, read_summary

TRIAL_COLUMNS = [
    "trial_id", "submission", "workload", "size", "framework", "ruleset", "study", "trial",
    "study_key", "seed", "status", "reason", "target_metric", "target_value", "target_mode",
    "time_to_target_s", "steps_to_target", "refined_time_to_target_s", "refined_steps_to_target",
    "budget_s", "steps", "submission_time_s", "contended", "contention", "overrides", "settings",
    "hardware_key", "hardware", "path",
]
EVAL_COLUMNS = [
    "trial_id", "submission", "workload", "size", "study_key", "step", "submission_time_s",
    "metric", "value",
]


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str


@dataclass(frozen=True)
class Loaded:
    """Everything read from some results folders."""

    trials: pd.DataFrame  # one row per finished trial, TRIAL_COLUMNS
    evals: pd.DataFrame  # one row per eval of the trial's target metric, EVAL_COLUMNS
    skipped: tuple[Skipped, ...]  # files that could not be used, with the reason
    unfinished: tuple[Path, ...]  # trial folders without summary.json
    roots: tuple[Path, ...]  # where we looked


# ---------------------------------------------------------------------------------------------
# Trial folders


def find_trial_dirs(roots: list[Path]) -> tuple[list[Path], list[Path]]:
    """(finished, unfinished) trial folders under `roots`, each sorted, without duplicates."""
    finished: set[Path] = set()
    unfinished: set[Path] = set()
    for root in roots:
        if not root.exists():
            raise UserError(f"results folder '{root}' does not exist")
        if not root.is_dir():
            raise UserError(f"'{root}' is not a folder; pass the results folder(s) to score")
        for dirpath, _dirnames, filenames in os.walk(root):
            folder = Path(dirpath).resolve()
            if SUMMARY in filenames:
                finished.add(folder)
            elif any(name in filenames for name in TRIAL_FILES):
                unfinished.add(folder)
    return sorted(finished), sorted(unfinished)


def settings_label(overrides: dict[str, Any]) -> str:
    """`default`, or the overridden preset settings in name order: `budget_s=60, max_steps=100`."""
    if not overrides:
        return "default"
    return ", ".join(f"{name}={overrides[name]:g}" if isinstance(overrides[name], float)
                     else f"{name}={overrides[name]}" for name in sorted(overrides))


def or_inf(value: float | None) -> float:
    return math.inf if value is None else float(value)


def trial_row(summary: Summary, folder: Path) -> dict[str, Any]:
    """One row of the trials table. Null or failed times become infinity; so do the refined ones
    of a trial without a refined crossing (schema 1): `ttt.time_column` decides the fallback."""
    reached = summary.status == "reached"
    # A plain `run` has study=null: it is a study of its own, keyed by its trial id.
    study_key = f"run:{summary.trial_id}" if summary.study is None else f"study{summary.study}"
    contention = summary.contention
    return {
        "trial_id": summary.trial_id,
        "submission": summary.submission,
        "workload": summary.workload,
        "size": summary.size,
        "framework": summary.framework,
        "ruleset": summary.ruleset,
        "study": summary.study,
        "trial": summary.trial,
        "study_key": study_key,
        "seed": summary.seed,
        "status": summary.status,
        "reason": summary.reason,
        "target_metric": summary.target.metric,
        "target_value": summary.target.value,
        "target_mode": summary.target.mode,
        "time_to_target_s": or_inf(summary.time_to_target_s if reached else None),
        "steps_to_target": or_inf(summary.steps_to_target if reached else None),
        "refined_time_to_target_s": or_inf(summary.refined_time_to_target_s),
        "refined_steps_to_target": or_inf(summary.refined_steps_to_target),
        "budget_s": summary.budget_s,
        "steps": summary.steps,
        "submission_time_s": summary.submission_time_s,
        # None: not measured (schema 1); such a trial is never refused as contended
        "contended": None if contention is None else contention.contended,
        "contention": None if contention is None else contention.model_dump(),
        "overrides": dict(summary.overrides),
        "settings": settings_label(summary.overrides),
        "hardware_key": summary.hardware_key,
        "hardware": summary.hardware,
        "path": str(folder),
    }


def read_evals(path: Path, *, metric: str) -> dict[str, np.ndarray] | str:
    """step, submission_time_s and the target metric of one evals.parquet, or why not."""
    if not path.exists():
        return "missing evals.parquet"
    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises several types for a damaged file
        return f"unreadable parquet: {type(error).__name__}: {error}"
    needed = ["step", "submission_time_s", metric]
    missing = [name for name in needed if name not in table.column_names]
    if missing:
        return f"missing column(s) {', '.join(missing)}"
    try:
        return {name: table.column(name).to_numpy().astype(float) for name in needed}
    except (TypeError, ValueError) as error:
        return f"non-numeric column: {error}"


def evals_frame(parts: list[tuple[dict[str, Any], dict[str, np.ndarray]]]) -> pd.DataFrame:
    """Concatenate per-trial eval arrays into one tidy frame (built once, for speed)."""
    if not parts:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in EVAL_COLUMNS})
    lengths = [len(arrays["step"]) for _row, arrays in parts]
    repeat = {
        key: np.repeat(np.array([row[src] for row, _ in parts], dtype=object), lengths)
        for key, src in [("trial_id", "trial_id"), ("submission", "submission"),
                         ("workload", "workload"), ("size", "size"),
                         ("study_key", "study_key"), ("metric", "target_metric")]
    }
    return pd.DataFrame({
        "trial_id": repeat["trial_id"],
        "submission": repeat["submission"],
        "workload": repeat["workload"],
        "size": repeat["size"],
        "study_key": repeat["study_key"],
        "step": np.concatenate([arrays["step"] for _, arrays in parts]),
        "submission_time_s": np.concatenate([arrays["submission_time_s"] for _, arrays in parts]),
        "metric": repeat["metric"],
        "value": np.concatenate([arrays[row["target_metric"]] for row, arrays in parts]),
    })


def load_results(roots: list[Path], *, with_evals: bool = True) -> Loaded:
    """Every finished trial under `roots`; `with_evals=False` skips the eval histories."""
    finished, unfinished = find_trial_dirs(roots)
    rows: list[dict[str, Any]] = []
    parts: list[tuple[dict[str, Any], dict[str, np.ndarray]]] = []
    skipped: list[Skipped] = []
    seen: dict[str, Path] = {}
    for folder in finished:
        summary = read_summary(folder / SUMMARY)
        if isinstance(summary, str):
            skipped.append(Skipped(folder / SUMMARY, summary))
            continue
        if summary.trial_id in seen:
            reason = f"duplicate trial_id '{summary.trial_id}' (kept {seen[summary.trial_id]})"
            skipped.append(Skipped(folder / SUMMARY, reason))
            continue
        seen[summary.trial_id] = folder
        row = trial_row(summary, folder)
        rows.append(row)
        if with_evals:
            arrays = read_evals(folder / EVALS, metric=summary.target.metric)
            if isinstance(arrays, str):
                skipped.append(Skipped(folder / EVALS, f"{arrays}; trial scored, curve omitted"))
            else:
                parts.append((row, arrays))
    trials = pd.DataFrame(rows, columns=TRIAL_COLUMNS)
    trials["study"] = trials["study"].astype("Int64")
    return Loaded(
        trials=trials,
        evals=evals_frame(parts),
        skipped=tuple(skipped),
        unfinished=tuple(unfinished),
        roots=tuple(roots),
    )


# ---------------------------------------------------------------------------------------------
# Published time-to-target tables

BUDGET_ROW = "budget_s"  # optional row of a table: per-workload budgets, for speedups
FAILED_CELLS = {"", "inf", "+inf", "infinity", "+infinity"}


@dataclass(frozen=True)
class Table:
    times: pd.DataFrame  # submissions x workloads, seconds, inf = failed
    budgets: pd.Series | None  # per workload, seconds; None when the table has no budget_s row


def parse_seconds(cell: str, *, where: str) -> float:
    text = cell.strip()
    if text.lower() in FAILED_CELLS:
        return math.inf
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{where}: '{cell}' is not a number of seconds "
                        "(write inf or leave the cell empty for a failed workload)") from None
    if math.isnan(value) or value < 0:
        raise UserError(f"{where}: '{cell}' is not a time to target (must be >= 0, or inf)")
    return value


def load_table(path: Path) -> Table:
    """A CSV with a `submission` column and one column of seconds per workload."""
    if not path.is_file():
        raise UserError(f"table '{path}' does not exist")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not a readable CSV table: {error}") from None
    raw.columns = [str(name).strip() for name in raw.columns]
    if "submission" not in raw.columns:
        raise UserError(f"{path}: no 'submission' column (columns: {', '.join(raw.columns)})")
    workloads = [name for name in raw.columns if name != "submission"]
    if not workloads or raw.empty:
        raise UserError(f"{path}: needs at least one workload column and one submission row")
    names = raw["submission"].str.strip()
    duplicated = names[names.duplicated()].tolist()
    if duplicated:
        raise UserError(f"{path}: submission '{duplicated[0]}' appears more than once")
    if (names == "").any():
        line = int(np.flatnonzero(names == "")[0]) + 2  # +1 header, +1 one-based
        raise UserError(f"{path}: line {line}: empty submission name")
    values = [
        [parse_seconds(raw.at[i, w], where=f"{path}: line {i + 2} ({names[i]}), column '{w}'")
         for w in workloads]
        for i in range(len(raw))
    ]
    frame = pd.DataFrame(values, index=pd.Index(names, name="submission"), columns=workloads)
    if BUDGET_ROW not in frame.index:
        return Table(times=frame, budgets=None)
    return Table(times=frame.drop(index=BUDGET_ROW), budgets=frame.loc[BUDGET_ROW])
