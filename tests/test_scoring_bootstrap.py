"""Bootstrap over studies: seeded, vectorised, and sound bounds."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from scoring.bootstrap import interval, resample_medians
from scoring.score import scorecard

INF = math.inf


def cells_of(values: list[list[list[float]]]) -> list[list[np.ndarray]]:
    return [[np.array(cell, float) for cell in row] for row in values]


CELLS = cells_of([[[10, 12, 11, 30, 9], [5, INF, 6]], [[20, 21, 19, 18, 40], [7, 8, 9]]])


def test_same_seed_same_draws():
    a = resample_medians(CELLS, n_boot=200, rng=np.random.default_rng(3))
    b = resample_medians(CELLS, n_boot=200, rng=np.random.default_rng(3))
    c = resample_medians(CELLS, n_boot=200, rng=np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_replicates_are_medians_of_the_cell():
    boot = resample_medians(CELLS, n_boot=500, rng=np.random.default_rng(0))
    assert boot.shape == (500, 2, 2)
    # odd study counts: every replicate median is one of the cell's own values
    for s in range(2):
        for w in range(2):
            assert set(np.unique(boot[:, s, w])) <= set(CELLS[s][w].tolist())


def test_single_study_and_empty_cells():
    boot = resample_medians(cells_of([[[42.0], []]]), n_boot=50, rng=np.random.default_rng(0))
    assert np.all(boot[:, 0, 0] == 42.0) and np.all(np.isinf(boot[:, 0, 1]))


def test_matches_a_loop_reference_in_distribution():
    cell = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    boot = resample_medians([[cell]], n_boot=20_000, rng=np.random.default_rng(1))[:, 0, 0]
    rng = np.random.default_rng(2)
    loop = np.array([np.median(rng.choice(cell, size=5, replace=True)) for _ in range(20_000)])
    for value in cell:  # P(median == value) agrees within sampling noise
        assert abs(np.mean(boot == value) - np.mean(loop == value)) < 0.02


def test_interval_never_interpolates_infinity():
    low, high = interval(np.array([[1.0], [INF], [INF], [2.0]]))
    assert low[0] == 1.0 and high[0] == INF


def test_interval_contains_the_point_score():
    times = pd.DataFrame([[10.0, 5.0], [20.0, 7.0]], index=["a", "b"], columns=["w1", "w2"])
    boot = resample_medians(CELLS, n_boot=1000, rng=np.random.default_rng(0))
    card = scorecard(times, boot_times=boot, tau_max=4.0)
    for row in card.scores.itertuples():
        assert row.score_low <= row.score <= row.score_high


def test_interval_holds_a_point_the_percentiles_miss():
    """97 replicates at 2.0 and 3 at the estimate 1.0: the plain 5-95% interval is [2, 2] and
    misses the estimate; given the estimate, the interval reaches down to it."""
    samples = np.array([1.0] * 3 + [2.0] * 97)[:, None]
    assert interval(samples)[0][0] == 2.0
    low, high = interval(samples, point=np.array([1.0]))
    assert low[0] == 1.0 and high[0] == 2.0
    assert [b[0] for b in interval(samples, point=np.array([2.0]))] == [2.0, 2.0]  # inside: unchanged
