"""AlgoPerf's scoring mode: `--tau-points 100` reproduces AlgoPerf's published scores.

The reference is not ours: the scores in tests/data/algoperf_leaderboard.csv were computed by
AlgoPerf's own `scoring/score_submissions.py` (trapezoid rule on `np.linspace(1, 4, 100)`,
divided by 3) from the time-to-target tables beside it. Source, verbatim:
mlcommons/submissions_algorithms@0007993ec77eba6a6de6636924cbf9ce1cd80d01, analysis/data/
time_to_targets.csv, time_to_target_steps.csv and leaderboard.csv (see tests/data/README.md).

Each test also measures how far the exact score (our default) is from the published one, so a
`--tau-points` that were silently ignored would fail: the error must be tiny against that
distance.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_scoring_helpers import invoke

from scoring.profiles import benchmark_scores, performance_ratios, tau_grid

DATA = Path(__file__).parent / "data"
PUBLISHED = pd.read_csv(DATA / "algoperf_leaderboard.csv").set_index("submission")
TABLES = [("algoperf_time_to_targets.csv", "wallclock"), ("algoperf_time_to_target_steps.csv", "steps")]


def scores(table: Path, *args: str) -> pd.DataFrame:
    code, out, err = invoke("score", "--table", table, "--format", "json", *args)
    assert code == 0, err
    return pd.DataFrame(json.loads(out)).set_index("submission").reindex(PUBLISHED.index)


@pytest.mark.parametrize("table, clock", TABLES)
def test_tau_points_100_reproduces_the_published_algoperf_scores(table, clock):
    published = PUBLISHED[f"score_by_{clock}"]
    ours = scores(DATA / table, "--tau-points", "100")
    error = (ours["score"] - published).abs().max()
    assert error < 1e-12
    assert ours["rank"].tolist() == PUBLISHED[f"rank_by_{clock}"].tolist()
    moved = (scores(DATA / table)["score"] - published).abs().max()  # exact area, the default
    assert moved > 1e-4 and error < 1e-9 * moved


def test_the_empty_cell_of_the_published_table_is_a_failure():
    # muon_torch_jax_hps has an empty librispeech_conformer cell and inf elsewhere: score 0
    ours = scores(DATA / "algoperf_time_to_targets.csv", "--tau-points", "100")
    assert ours.at["muon_torch_jax_hps", "score"] == 0.0
    assert ours.at["muon_torch_jax_hps", "failed"] == 9


def test_two_points_are_the_mean_of_rho_at_both_ends():
    # ratios 1, 2.5, fail: rho(1) = 1/3, rho(4) = 2/3, the 2-point trapezoid 1/2;
    # ratios 2, 1, 1: rho(1) = 2/3, rho(4) = 1
    ratios = performance_ratios(np.array([[10.0, 25.0, np.inf], [20.0, 10.0, 30.0]]), tau_max=4.0)
    two = benchmark_scores(ratios, tau_max=4.0, tau_points=2)
    assert two[0] == pytest.approx(0.5) and two[1] == pytest.approx((2 / 3 + 1) / 2)


def test_many_points_converge_to_the_exact_area():
    rng = np.random.default_rng(0)
    times = np.where(rng.random((6, 9)) < 0.2, np.inf, rng.uniform(10, 50, (6, 9)))
    ratios = performance_ratios(times, tau_max=4.0)
    exact = benchmark_scores(ratios, tau_max=4.0)
    for points in (100, 10_000):
        step = tau_grid(4.0, points)[1] - 1.0  # each step of rho is smeared over one interval
        gap = np.abs(benchmark_scores(ratios, tau_max=4.0, tau_points=points) - exact).max()
        assert gap <= step / (4.0 - 1.0)


def test_tau_points_below_two_is_a_user_error():
    code, _, err = invoke("score", "--table", DATA / "algoperf_time_to_targets.csv",
                          "--tau-points", "1")
    assert code == 2 and "--tau-points" in err and "100" in err
