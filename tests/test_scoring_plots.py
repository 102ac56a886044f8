"""Figure builders: what is drawn is what was scored."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from test_scoring_helpers import invoke

from scoring.pipeline import Scored
from scoring.plots import figure_bytes, profile_figure
from scoring.score import scorecard

INF = math.inf


def scored_from(times: pd.DataFrame, boot: np.ndarray | None = None) -> Scored:
    card = scorecard(times, boot_times=boot, tau_max=4.0)
    return Scored(card=card, trials=pd.DataFrame(), loaded=None, ruleset="external",
                  n_studies=None, n_reached=None, notes=(), hardware=("test",))


def test_profile_lines_follow_their_own_submission():
    # Alphabetical order (a, b, c) differs from rank order (c, b, a).
    times = pd.DataFrame([[40.0, 30.0], [20.0, INF], [10.0, 10.0]], index=["a", "b", "c"],
                         columns=["w1", "w2"])
    boot = np.stack([times.to_numpy()] * 20)
    figure = profile_figure(scored_from(times, boot))
    lines = {line.get_label().split(":")[0]: line for line in figure.axes[0].get_lines()}
    assert set(lines) == {"a", "b", "c"}
    # a: ratios 4 and 3 -> rho reaches 1 at tau 4; b: ratio 2 on one workload -> at most 0.5
    assert lines["a"].get_ydata()[-1] == 1.0 and 3.0 in lines["a"].get_xdata()
    assert max(lines["b"].get_ydata()) == 0.5 and 2.0 in lines["b"].get_xdata()
    assert lines["c"].get_ydata()[0] == 1.0
    assert len(figure_bytes(figure)) > 10_000


def test_profile_from_a_published_table(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("submission,w1,w2\na,1,2\nb,2,1\n")
    out = tmp_path / "profile.png"
    code, _, _ = invoke("plot", "profile", "--table", table, "--out", out)
    assert code == 0 and out.stat().st_size > 10_000
