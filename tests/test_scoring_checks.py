"""What a ranking may hold: which time to target, contended trials, overridden settings.

Every fixture is a summary.json the recorder could write (tests/test_scoring_helpers.py builds
them through algobench.layout's validator).
"""

from __future__ import annotations

import io
import json
import math

import pandas as pd
import pytest
from test_scoring_helpers import invoke, write_trial

INF = math.inf


def scores(*args) -> dict[str, float]:
    code, out, err = invoke("score", *args, "--format", "csv", "--bootstrap", "0")
    assert code == 0, err
    return pd.read_csv(io.StringIO(out)).set_index("submission")["score"].to_dict()


# --- refined or eval-based ------------------------------------------------------------------


@pytest.fixture
def refined(tmp_path):
    """gpt2: a crosses at 100 s by its evals but at 60 s between them; b at 80 s (both)."""
    write_trial(tmp_path, submission="a", time_s=100.0, refined_time_s=60.0)
    write_trial(tmp_path, submission="b", time_s=80.0)
    return tmp_path


def test_refined_time_is_the_default_and_eval_time_is_algoperfs(refined):
    assert scores(refined) == scores(refined, "--time", "refined")
    assert scores(refined) == pytest.approx({"a": 1.0, "b": (4 - 80 / 60) / 3})
    assert scores(refined, "--time", "eval") == pytest.approx({"a": (4 - 100 / 80) / 3, "b": 1.0})


def test_refined_steps_with_by_steps(tmp_path):
    write_trial(tmp_path, submission="a", time_s=100.0, steps_to_target=1000, refined_time_s=60.0,
                refined_steps=500)
    write_trial(tmp_path, submission="b", time_s=80.0, steps_to_target=1000)
    assert scores(tmp_path, "--by", "steps") == pytest.approx({"a": 1.0, "b": (4 - 2) / 3})
    assert scores(tmp_path, "--by", "steps", "--time", "eval") == {"a": 1.0, "b": 1.0}


def test_results_without_a_refined_crossing_fall_back_and_say_so(tmp_path):
    write_trial(tmp_path, submission="a", time_s=100.0, refined_time_s=60.0)
    write_trial(tmp_path, submission="old", time_s=90.0, schema=1)
    code, out, err = invoke("score", tmp_path, "--format", "csv", "--bootstrap", "0")
    assert code == 0
    assert pd.read_csv(io.StringIO(out)).set_index("submission")["score"].to_dict() == \
        pytest.approx({"a": 1.0, "old": (4 - 1.5) / 3})  # old: its eval time, 90 s
    assert "1 trial(s) reached the target without a refined crossing" in err
    assert "eval-based time" in err
    code, out, _ = invoke("score", tmp_path)
    assert "refined crossing between evals; 1 trial(s) without one at their eval" in out
    _, _, err = invoke("score", tmp_path, "--time", "eval", "--format", "csv")
    assert "refined crossing" not in err  # nothing falls back when every trial uses its eval


# --- contention -----------------------------------------------------------------------------


@pytest.fixture
def contended(tmp_path):
    write_trial(tmp_path, submission="a", study=0, time_s=100.0)
    write_trial(tmp_path, submission="b", study=0, time_s=120.0, contended=True,
                trial_id="busy-b-0")
    write_trial(tmp_path, submission="b", study=1, time_s=110.0)
    return tmp_path


@pytest.mark.parametrize("command", ["score", "leaderboard", "report", "plot"])
def test_contended_trials_are_refused_in_one_line_naming_them(contended, command, tmp_path):
    args = {"score": ["score", contended], "leaderboard": ["leaderboard", contended],
            "report": ["report", contended, "--out", tmp_path / "r.html"],
            "plot": ["plot", "profile", contended, "--out", tmp_path / "p.png"]}[command]
    code, _, err = invoke(*args)
    assert code == 2 and err.count("\n") == 1
    assert "1 contended trial(s)" in err and "busy-b-0" in err and "b on gpt2/small" in err
    assert "run queue 3.9 on 2 cores" in err and "--allow-contended" in err


def test_allowed_contended_trials_are_marked(contended, tmp_path):
    code, out, err = invoke("score", contended, "--allow-contended")
    assert code == 0 and "contended" in out and "⚠ 1 trial(s)" in out
    assert "1 contended trial(s) ranked" in err
    code, out, _ = invoke("score", contended, "--allow-contended", "--format", "json")
    assert {r["submission"]: r["contended_trials"] for r in json.loads(out)} == {"a": 0, "b": 1}
    code, out, _ = invoke("leaderboard", contended, "--allow-contended")
    assert code == 0 and "⚠ 1 contended trial(s)" in out
    report = tmp_path / "report.html"
    assert invoke("report", contended, "--allow-contended", "--out", report,
                  "--bootstrap", "50")[0] == 0
    html = report.read_text()
    assert "Contended trials" in html and "busy-b-0" in html and "⚠ 1 contended" in html


def test_trials_without_a_contention_reading_are_not_refused(tmp_path):
    write_trial(tmp_path, submission="a", time_s=100.0, schema=1)
    write_trial(tmp_path, submission="b", time_s=120.0)
    assert invoke("score", tmp_path)[0] == 0


# --- overridden settings --------------------------------------------------------------------


@pytest.fixture
def mixed(tmp_path):
    write_trial(tmp_path, submission="a", time_s=100.0)
    write_trial(tmp_path, submission="b", time_s=50.0, budget_s=60.0, overrides={"budget_s": 60.0})
    write_trial(tmp_path, workload="vit", submission="a", time_s=10.0)
    write_trial(tmp_path, workload="vit", submission="b", time_s=12.0)
    return tmp_path


@pytest.mark.parametrize("command", ["score", "leaderboard"])
def test_mixed_settings_are_refused_naming_them(mixed, command):
    code, _, err = invoke(command, mixed)
    assert code == 2 and err.count("\n") == 1
    assert "different settings" in err and "gpt2/small" in err and "vit/small" not in err
    assert "default (1 trial(s): a)" in err and "budget_s=60 (1 trial(s): b)" in err
    assert "--allow-overrides" in err


def test_allowed_overrides_are_shown(mixed, tmp_path):
    code, out, _ = invoke("score", mixed, "--allow-overrides")
    assert code == 0 and "overridden settings: gpt2/small budget_s=60 / default" in out
    report = tmp_path / "report.html"
    assert invoke("report", mixed, "--allow-overrides", "--out", report, "--bootstrap", "50")[0] == 0
    html = report.read_text()
    assert "Budgets and settings" in html
    assert "gpt2/small · budget 60 s, 1,000 s · overrides: budget_s=60 / default" in html
    assert "vit/small · budget 1,000 s · preset settings" in html


def test_one_workload_run_with_the_same_overrides_is_ranked(tmp_path):
    for submission, time_s in [("a", 30.0), ("b", 40.0)]:
        write_trial(tmp_path, submission=submission, time_s=time_s, budget_s=60.0,
                    overrides={"budget_s": 60.0, "max_steps": 500})
    code, out, _ = invoke("leaderboard", tmp_path)
    assert code == 0 and "overridden settings: gpt2/small budget_s=60, max_steps=500" in out


def test_report_shows_each_workloads_budget(tmp_path):
    write_trial(tmp_path, submission="a", time_s=100.0, budget_s=1000.0)
    write_trial(tmp_path, workload="vit", submission="a", time_s=10.0, budget_s=120.0)
    report = tmp_path / "report.html"
    assert invoke("report", tmp_path, "--out", report, "--bootstrap", "0")[0] == 0
    html = report.read_text()
    assert "gpt2/small · budget 1,000 s · preset settings" in html
    assert "vit/small · budget 120 s · preset settings" in html


# --- --tau-points on every scoring command -----------------------------------------------------


def test_tau_points_on_leaderboard_report_and_plot(refined, tmp_path):
    code, out, _ = invoke("leaderboard", refined, "--tau-points", "100")
    assert code == 0 and "trapezoid rule on 100 tau points (AlgoPerf)" in out
    report = tmp_path / "report.html"
    assert invoke("report", refined, "--tau-points", "100", "--out", report)[0] == 0
    assert "trapezoid rule on 100 tau points" in report.read_text()
    assert invoke("plot", "profile", refined, "--tau-points", "100", "--out", tmp_path / "p.png")[0] == 0
    code, out, _ = invoke("score", refined)
    assert "exact area under rho" in out
    exact, trapezoid = scores(refined), scores(refined, "--tau-points", "100")
    assert exact != trapezoid and trapezoid == pytest.approx(exact, abs=2 / 99)
