"""Time-to-target aggregation per ruleset, against a brute-force reference."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from algobench.errors import UserError
from scoring.ttt import median_times, study_counts, study_times, unrefined

INF = math.inf


def trials_frame(rows: list[tuple[str, str, str, float]], *,
                 refined: list[float] | None = None) -> pd.DataFrame:
    """(submission, workload, study_key, time) rows as a minimal trials table; the refined
    crossing is the eval's unless `refined` gives one per row (inf: none recorded)."""
    times = [r[3] for r in rows]
    refined = times if refined is None else refined
    return pd.DataFrame({
        "submission": [r[0] for r in rows], "workload": [r[1] for r in rows],
        "size": "small", "study_key": [r[2] for r in rows],
        "time_to_target_s": times, "steps_to_target": [t * 10 for t in times],
        "refined_time_to_target_s": refined, "refined_steps_to_target": [t * 10 for t in refined],
    })


def brute_force_external(rows) -> dict[tuple[str, str], float]:
    """Fastest trial per study, then the median over studies, with plain Python."""
    fastest: dict[tuple[str, str, str], float] = {}
    for submission, workload, study, time in rows:
        key = (submission, workload, study)
        fastest[key] = min(fastest.get(key, INF), time)
    per_cell = defaultdict(list)
    for (submission, workload, _study), time in fastest.items():
        per_cell[(submission, f"{workload}/small")].append(time)
    out = {}
    for cell, values in per_cell.items():
        values = sorted(values)
        mid = len(values) // 2
        out[cell] = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    return out


ROW = st.tuples(st.sampled_from(["adamw", "sgd", "lion"]), st.sampled_from(["gpt2", "vit"]),
                st.sampled_from(["study0", "study1", "study2", "run:x"]),
                st.one_of(st.floats(min_value=0, max_value=1e5), st.just(INF)))


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(ROW, min_size=1, max_size=40))
def test_external_ruleset_equals_brute_force(rows):
    studies = study_times(trials_frame(rows), ruleset="external", by="time")
    submissions = sorted({r[0] for r in rows})
    workloads = sorted({f"{r[1]}/small" for r in rows})
    wide = median_times(studies, submissions=submissions, workloads=workloads)
    expected = brute_force_external(rows)
    for s in submissions:
        for w in workloads:
            assert wide.at[s, w] == pytest.approx(expected.get((s, w), INF))


def test_infinity_takes_part_in_the_median():
    rows = [("a", "w", "study0", 10.0), ("a", "w", "study1", INF), ("a", "w", "study2", INF),
            ("b", "w", "study0", 10.0), ("b", "w", "study1", 20.0), ("b", "w", "study2", INF)]
    studies = study_times(trials_frame(rows), ruleset="external", by="time")
    wide = median_times(studies, submissions=["a", "b"], workloads=["w/small"])
    assert wide["w/small"].tolist() == [INF, 20.0]


def test_fastest_trial_of_each_study_counts():
    rows = [("a", "w", "study0", 30.0), ("a", "w", "study0", 10.0), ("a", "w", "study0", INF),
            ("a", "w", "study1", 50.0)]
    studies = study_times(trials_frame(rows), ruleset="external", by="time")
    assert studies["time"].tolist() == [10.0, 50.0] and studies["n_trials"].tolist() == [3, 1]
    n_studies, n_reached = study_counts(studies, submissions=["a"], workloads=["w/small"])
    assert n_studies.iat[0, 0] == 2 and n_reached.iat[0, 0] == 2


def test_self_ruleset_takes_the_median_of_single_runs():
    rows = [("a", "w", "run:1", 10.0), ("a", "w", "run:2", 30.0), ("a", "w", "run:3", INF)]
    studies = study_times(trials_frame(rows), ruleset="self", by="steps")
    wide = median_times(studies, submissions=["a"], workloads=["w/small"])
    assert wide.iat[0, 0] == 300.0


def test_self_ruleset_refuses_studies_with_several_trials():
    rows = [("a", "w", "study0", 10.0), ("a", "w", "study0", 30.0)]
    with pytest.raises(UserError, match="single run"):
        study_times(trials_frame(rows), ruleset="self", by="time")


def test_missing_cell_is_infinite():
    rows = [("a", "w", "study0", 10.0), ("b", "v", "study0", 5.0)]
    studies = study_times(trials_frame(rows), ruleset="external", by="time")
    wide = median_times(studies, submissions=["a", "b"], workloads=["v/small", "w/small"])
    assert np.isinf(wide.at["a", "v/small"]) and np.isinf(wide.at["b", "w/small"])


def test_refined_time_by_default_eval_time_on_request_and_the_fallback():
    # a: refined 70 (eval 100); b: no refined crossing (schema 1), eval 90; c: not reached
    rows = [("a", "w", "study0", 100.0), ("b", "w", "study0", 90.0), ("c", "w", "study0", INF)]
    trials = trials_frame(rows, refined=[70.0, INF, INF])
    refined = study_times(trials, ruleset="external", by="time")
    assert refined["time"].tolist() == [70.0, 90.0, INF]  # b falls back to its eval
    assert study_times(trials, ruleset="external", by="steps")["time"].tolist() == [700.0, 900.0, INF]
    by_eval = study_times(trials, ruleset="external", by="time", clock="eval")
    assert by_eval["time"].tolist() == [100.0, 90.0, INF]
    assert unrefined(trials)["submission"].tolist() == ["b"]  # c never reached: nothing to refine
