"""The scorecard: scores, ranks, intervals and speedups from time-to-target data.

`scorecard` is pure: it takes the point times (median over studies) and, when there are studies
to resample, the bootstrap replicates of those times.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scoring.bootstrap import LEVEL, interval
from scoring.profiles import (apply_variant_rule, benchmark_scores, geometric_mean,
                              performance_ratios, speedups)


@dataclass(frozen=True)
class Scorecard:
    """Everything the tables, plots and report show. Times in `unit`; inf = not reached."""

    scores: pd.DataFrame  # rank, submission, score, score_low, score_high, failed[, speedup...]
    times: pd.DataFrame  # submissions x scored workloads: median time to target over studies
    time_low: pd.DataFrame  # bootstrap interval on `times`
    time_high: pd.DataFrame
    ratios: pd.DataFrame  # r(s, w); inf = failure (not reached, or above tau_max)
    speedups: pd.DataFrame | None  # long: submission, workload, speedup, low, high
    boot_ratios: np.ndarray | None  # (replicates, submissions, workloads), for profile bands
    tau_max: float
    tau_points: int | None  # None: exact area; N: AlgoPerf's trapezoid rule on N points
    unit: str  # "s" or "steps"
    n_bootstrap: int  # 0 when there was nothing to resample
    seed: int
    baseline: str | None
    level: float = LEVEL


def rank(scores: pd.Series) -> pd.Series:
    """1 = best; ties share the better rank."""
    return scores.rank(ascending=False, method="min").astype(int)


def scorecard(times: pd.DataFrame, *, boot_times: np.ndarray | None, tau_max: float,
              tau_points: int | None = None, variants: dict[str, str] | None = None,
              baseline: str | None = None, budgets: pd.Series | None = None, unit: str = "s",
              seed: int = 0) -> Scorecard:
    """Score every submission (rows of `times`) over the workloads (columns).

    boot_times: (replicates, submissions, workloads) bootstrap times, or None for no interval
    (the interval is then the point itself). budgets: per workload, needed with a baseline.
    tau_points: None integrates rho exactly; N uses AlgoPerf's trapezoid rule on N points.
    """
    workloads = list(times.columns)
    submissions = list(times.index)
    gated, scored = apply_variant_rule(times.to_numpy(float), workloads=workloads,
                                       variants=variants or {}, tau_max=tau_max)
    base_cols = [workloads.index(w) for w in scored]
    point = times.to_numpy(float)[:, base_cols]  # shown as measured; the rule acts on ratios
    ratios = performance_ratios(gated, tau_max=tau_max)
    score = benchmark_scores(ratios, tau_max=tau_max, tau_points=tau_points)

    boot_ratios = None
    time_low = time_high = point
    score_low = score_high = score
    if boot_times is not None:
        boot_gated, _ = apply_variant_rule(boot_times, workloads=workloads,
                                           variants=variants or {}, tau_max=tau_max)
        boot_ratios = performance_ratios(boot_gated, tau_max=tau_max)
        boot_scores = benchmark_scores(boot_ratios, tau_max=tau_max, tau_points=tau_points)
        score_low, score_high = interval(boot_scores, point=score)
        time_low, time_high = interval(boot_times[..., base_cols], point=point)

    frame = {"index": submissions, "columns": pd.Index(scored, name="workload")}
    table = pd.DataFrame({
        "submission": submissions,
        "score": score,
        "score_low": score_low,
        "score_high": score_high,
        "failed": np.isinf(ratios).sum(axis=1),
        "workloads": len(scored),
    })
    speedup_long = None
    if baseline is not None:
        base_index = submissions.index(baseline)
        # As in AlgoPerf's speedup script: variants are left out, only base workloads count.
        budget = budgets.reindex(scored).to_numpy(float)
        per_workload = speedups(point, baseline=base_index, budgets=budget)
        overall = geometric_mean(per_workload)
        low_w, high_w = per_workload, per_workload
        low, high = overall, overall
        if boot_times is not None:
            boot = speedups(boot_times[..., base_cols], baseline=base_index, budgets=budget)
            low_w, high_w = interval(boot, point=per_workload)
            low, high = interval(geometric_mean(boot), point=overall)
        table = table.assign(speedup=overall, speedup_low=low, speedup_high=high)
        speedup_long = pd.DataFrame({
            "submission": np.repeat(submissions, len(scored)),
            "workload": np.tile(scored, len(submissions)),
            "speedup": per_workload.ravel(),
            "speedup_low": np.asarray(low_w).ravel(),
            "speedup_high": np.asarray(high_w).ravel(),
        })
    table.insert(0, "rank", rank(table["score"]))
    table = table.sort_values(["rank", "submission"], kind="stable").reset_index(drop=True)
    return Scorecard(
        scores=table,
        times=pd.DataFrame(point, **frame),
        time_low=pd.DataFrame(time_low, **frame),
        time_high=pd.DataFrame(time_high, **frame),
        ratios=pd.DataFrame(ratios, **frame),
        speedups=speedup_long,
        boot_ratios=boot_ratios,
        tau_max=tau_max,
        tau_points=tau_points,
        unit=unit,
        n_bootstrap=0 if boot_times is None else int(boot_times.shape[0]),
        seed=seed,
        baseline=baseline,
    )
