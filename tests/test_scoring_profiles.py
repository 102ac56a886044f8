"""Performance profiles, scores, the variant rule and speedups: golden tables and properties."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from algobench.errors import UserError
from scoring.profiles import (apply_variant_rule, benchmark_scores, geometric_mean,
                              performance_ratios, profile, speedups, variant_map)
from scoring.score import scorecard

INF = math.inf


def scores_of(times, tau_max=4.0):
    return benchmark_scores(performance_ratios(np.array(times, float), tau_max=tau_max),
                            tau_max=tau_max)


# --- golden tables, computed by hand -------------------------------------------------------------


@pytest.mark.parametrize("times, expected", [
    # ties: both fastest on w1; on w2 the second is 2x slower: (1 + (4 - 2) / 3) / 2
    ([[10, 20], [10, 40]], [1.0, 5 / 6]),
    # a workload nobody reached gives everyone 0 there
    ([[10, INF], [20, INF]], [0.5, (2 / 3) / 2]),
    # a single submission is the best wherever it reached the target
    ([[5, INF, 7]], [2 / 3]),
    # everything failed
    ([[INF, INF], [INF, INF]], [0.0, 0.0]),
    # ratio 2.5 on w1, 1 on w2, failure (6x) on w3
    ([[25, 3, 60], [10, 6, 10]], [((4 - 2.5) / 3 + 1 + 0) / 3, (1 + (4 - 2) / 3 + 1) / 3]),
])
def test_golden_scores(times, expected):
    np.testing.assert_allclose(scores_of(times), expected, rtol=1e-12)


def test_ratio_exactly_tau_max_is_a_success():
    ratios = performance_ratios(np.array([[1.0], [4.0], [4.0 + 1e-9]]), tau_max=4.0)
    assert ratios[:, 0].tolist()[:2] == [1.0, 4.0] and ratios[2, 0] == INF
    # rho at tau = tau_max counts the submission at exactly tau_max...
    assert profile(ratios, np.array([4.0]))[:, 0].tolist() == [1.0, 1.0, 0.0]
    # ...and its area on [1, tau_max] is zero, so its score is 0 either way.
    np.testing.assert_allclose(benchmark_scores(ratios, tau_max=4.0), [1.0, 0.0, 0.0])


@pytest.mark.parametrize("tau_max, expected", [(2.0, 0.5), (4.0, 2.5 / 3), (1.5, 0.0)])
def test_tau_max_changes_the_scale(tau_max, expected):
    assert scores_of([[10], [15]], tau_max=tau_max)[1] == pytest.approx(expected)


def test_zero_best_time_does_not_divide_by_zero():
    ratios = performance_ratios(np.array([[0.0], [0.0], [3.0]]), tau_max=4.0)
    assert ratios[:, 0].tolist() == [1.0, 1.0, INF]


def test_variant_rule_golden():
    # A: fine everywhere. B: its variant is 5x the best (>4): its base does not count.
    # C: variant 30 is within 4x of the best *eligible* 10; D reached no base, so D's fast
    # variant (5) is removed before the best is taken (AlgoPerf step 1), else C would fail.
    times = np.array([[10, 10], [12, 50], [30, 30], [INF, 5]], float)
    gated, kept = apply_variant_rule(times, workloads=["vit", "vit_glu"],
                                     variants={"vit_glu": "vit"}, tau_max=4.0)
    assert kept == ["vit"]
    assert gated[:, 0].tolist() == [10, INF, 30, INF]
    np.testing.assert_allclose(benchmark_scores(performance_ratios(gated, tau_max=4), tau_max=4),
                               [1.0, 0.0, 1 / 3, 0.0])


def test_variant_rule_vectorised_over_replicates():
    one = np.array([[10, 10], [12, 50], [30, 30]], float)
    batch = np.stack([one, one * 2, one[::-1]])
    gated, _ = apply_variant_rule(batch, workloads=["a", "a_v"], variants={"a_v": "a"},
                                  tau_max=4.0)
    for b in range(3):
        single, _ = apply_variant_rule(batch[b], workloads=["a", "a_v"],
                                       variants={"a_v": "a"}, tau_max=4.0)
        np.testing.assert_array_equal(gated[b], single)


def test_variant_map():
    labels = ["vit/small", "vit_glu/small", "vit/full", "vit_glu/full", "gpt2/small"]
    expected = {"vit_glu/small": "vit/small", "vit_glu/full": "vit/full"}
    assert variant_map(labels, ["vit_glu=vit"]) == expected
    assert variant_map(labels, ["auto"]) == expected
    assert variant_map(["vit", "vit_glu"], ["vit_glu=vit"]) == {"vit_glu": "vit"}  # a table
    assert variant_map(labels, []) == {}
    with pytest.raises(UserError, match="not VARIANT=BASE"):
        variant_map(labels, ["vit_glu"])
    with pytest.raises(UserError, match="no workload 'vit_relu'"):
        variant_map(labels, ["vit_relu=vit"])
    with pytest.raises(UserError, match="no base 'resnet/small'"):
        variant_map(labels, ["vit_glu=resnet"])


def test_speedups_count_failures_at_budget_plus_one_second():
    times = np.array([[100.0, INF], [50.0, 200.0]])
    per = speedups(times, baseline=0, budgets=np.array([1000.0, 1000.0]))
    np.testing.assert_allclose(per, [[1.0, 1.0], [2.0, 1001 / 200]])
    assert geometric_mean(per)[1] == pytest.approx(math.sqrt(2.0 * 1001 / 200))


def test_scorecard_golden_with_baseline():
    times = pd.DataFrame([[100.0, INF], [50.0, 200.0]], index=["base", "new"],
                         columns=["w1", "w2"])
    card = scorecard(times, boot_times=None, tau_max=4.0, baseline="base",
                     budgets=pd.Series({"w1": 1000.0, "w2": 1000.0}))
    table = card.scores.set_index("submission")
    assert table.loc["new", "rank"] == 1 and table.loc["base", "rank"] == 2
    assert table.loc["new", "score"] == pytest.approx(1.0)
    assert table.loc["base", "score"] == pytest.approx(((4 - 2) / 3 + 0) / 2)
    assert table.loc["base", "failed"] == 1
    assert table.loc["new", "speedup"] == pytest.approx(math.sqrt(2.0 * 1001 / 200))
    # no studies to resample: the interval is the point
    assert table.loc["new", "score_low"] == table.loc["new", "score_high"] == 1.0


def test_ties_share_a_rank():
    card = scorecard(pd.DataFrame([[1.0], [1.0], [2.0]], index=list("abc"), columns=["w"]),
                     boot_times=None, tau_max=4.0)
    assert card.scores.set_index("submission")["rank"].to_dict() == {"a": 1, "b": 1, "c": 3}


# --- properties ----------------------------------------------------------------------------------

TIME = st.one_of(st.floats(min_value=1e-3, max_value=1e6), st.just(INF))
TIMES = st.tuples(st.integers(1, 5), st.integers(1, 6)).flatmap(
    lambda shape: arrays(float, shape, elements=TIME))


@settings(max_examples=150, deadline=None)
@given(times=TIMES, scale=st.floats(min_value=1e-3, max_value=1e3))
def test_scaling_every_time_changes_no_score(times, scale):
    np.testing.assert_allclose(scores_of(times * scale), scores_of(times), atol=1e-9)


@settings(max_examples=150, deadline=None)
@given(times=TIMES)
def test_scores_lie_in_unit_interval(times):
    scores = scores_of(times)
    assert np.all((scores >= 0) & (scores <= 1))


@settings(max_examples=150, deadline=None)
@given(times=TIMES, factor=st.floats(min_value=1.0, max_value=10.0))
def test_fastest_everywhere_scores_one(times, factor):
    fast = np.full((1, times.shape[1]), 1.0)
    others = np.maximum(times, 1.0) * factor  # nobody is faster than 1.0
    assert scores_of(np.vstack([fast, others]))[0] == pytest.approx(1.0)


@settings(max_examples=60, deadline=None)
@given(times=TIMES, tau_max=st.floats(min_value=1.1, max_value=10.0))
def test_exact_integral_matches_fine_numerical_integration(times, tau_max):
    ratios = performance_ratios(times, tau_max=tau_max)
    taus = np.linspace(1.0, tau_max, 20_001)
    rho = profile(ratios, taus)
    numeric = np.trapezoid(rho, taus, axis=-1) / (tau_max - 1.0)
    np.testing.assert_allclose(benchmark_scores(ratios, tau_max=tau_max), numeric, atol=1e-3)
