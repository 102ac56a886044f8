"""The scoring commands end to end: score, leaderboard, plot profile|curves, report."""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_scoring_helpers import invoke, write_study_grid, write_trial

INF = math.inf

# Hand-computed: adamw study medians gpt2 100 (studies 100, 110, 90), vit 60; sgd gpt2 200
# (200, inf, 150), vit 45. Ratios: adamw 1 and 60/45, sgd 2 and 1.
GRID = {
    ("adamw", "gpt2"): [[100, 120], [110, INF], [90, 95]],
    ("sgd", "gpt2"): [[200, 220], [INF, INF], [150, 300]],
    ("adamw", "vit"): [[50], [60], [70]],
    ("sgd", "vit"): [[40], [45], [80]],
}
SCORES = {"adamw": (1 + (4 - 60 / 45) / 3) / 2, "sgd": ((4 - 2) / 3 + 1) / 2}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("scoring") / "results"
    write_study_grid(root, GRID)
    return root


def test_score_csv_has_the_contract_columns_and_hand_scores(results):
    code, out, _ = invoke("score", results, "--format", "csv", "--seed", "1")
    assert code == 0
    frame = pd.read_csv(io.StringIO(out)).set_index("submission")
    assert {"score", "score_low", "score_high", "rank"} <= set(frame.columns)
    for name, expected in SCORES.items():
        assert frame.at[name, "score"] == pytest.approx(expected, abs=1e-6)
        assert frame.at[name, "score_low"] <= frame.at[name, "score"] <= frame.at[name,
                                                                                  "score_high"]
    assert frame["rank"].to_dict() == {"adamw": 1, "sgd": 2}


def test_score_json_with_baseline(results):
    code, out, _ = invoke("score", results, "--format", "json", "--baseline", "adamw",
                          "--bootstrap", "200")
    assert code == 0
    records = {r["submission"]: r for r in json.loads(out)}
    sgd = records["sgd"]
    assert sgd["speedup"] == pytest.approx(math.sqrt(100 / 200 * 60 / 45))
    assert sgd["speedup_low"] <= sgd["speedup"] <= sgd["speedup_high"]
    assert sgd["speedup:gpt2/small"] == pytest.approx(0.5)
    assert "speedup_low:vit/small" in sgd


def test_score_is_reproducible_with_a_seed(results):
    first = invoke("score", results, "--format", "csv", "--seed", "7")[1]
    assert invoke("score", results, "--format", "csv", "--seed", "7")[1] == first


@pytest.mark.parametrize("fmt, needle", [("table", "90% interval"), ("markdown", "| rank |")])
def test_score_text_formats(results, fmt, needle):
    code, out, _ = invoke("score", results, "--format", fmt, "--baseline", "sgd")
    assert code == 0 and needle in out and "seed 0" in out and "cpu-test" in out


def test_score_table_matches_hand_computation(tmp_path):
    # wmt: best 100 -> a 1, b 2, c fails (5x). ogbg: a 30 (1.5x), b 20 (best), c failed.
    # a = (1 + (4-1.5)/3) / 2, b = ((4-2)/3 + 1) / 2, c = 0
    table = tmp_path / "published.csv"
    table.write_text("submission,wmt,ogbg\na,100,30\nb,200,20\nc,500,inf\n")
    code, out, _ = invoke("score", "--table", table, "--format", "csv")
    assert code == 0
    scores = pd.read_csv(io.StringIO(out)).set_index("submission")["score"]
    assert scores.to_dict() == pytest.approx({"a": (1 + 2.5 / 3) / 2, "b": (2 / 3 + 1) / 2,
                                              "c": 0.0})


def test_score_table_with_variant_rule(tmp_path):
    table = tmp_path / "published.csv"
    table.write_text("submission,vit,vit_glu\na,10,10\nb,12,50\n")
    code, out, _ = invoke("score", "--table", table, "--variant-rule", "vit_glu=vit",
                          "--format", "csv")
    assert code == 0
    assert pd.read_csv(io.StringIO(out)).set_index("submission")["score"].to_dict() == {
        "a": 1.0, "b": 0.0}


def test_bad_table_is_a_user_error(tmp_path):
    table = tmp_path / "bad.csv"
    table.write_text("submission,wmt\na,12 minutes\n")
    code, _, err = invoke("score", "--table", table)
    assert code == 2 and "bad.csv: line 2 (a), column 'wmt'" in err


def test_mixed_hardware_is_refused_unless_allowed(tmp_path):
    write_trial(tmp_path, submission="a", hardware_key="h100-x1")
    write_trial(tmp_path, submission="b", hardware_key="a100-x8")
    code, _, err = invoke("score", tmp_path)
    assert code == 2 and "a100-x8" in err and "h100-x1" in err and "--allow-mixed-hardware" in err
    code, out, _ = invoke("leaderboard", tmp_path, "--allow-mixed-hardware")
    assert code == 0 and "a100-x8" in out and "h100-x1" in out


def test_mixed_frameworks_are_refused_unless_allowed(tmp_path):
    write_trial(tmp_path, submission="a", framework="torch")
    write_trial(tmp_path, submission="b", framework="jax")
    code, _, err = invoke("score", tmp_path)
    assert code == 2 and "jax" in err and "--allow-mixed-frameworks" in err
    assert invoke("score", tmp_path, "--allow-mixed-frameworks")[0] == 0


def test_mixed_rulesets_need_a_choice(tmp_path):
    write_trial(tmp_path, submission="a", ruleset="external")
    write_trial(tmp_path, submission="b", ruleset="self", study=None, trial=None)
    code, _, err = invoke("score", tmp_path)
    assert code == 2 and "--ruleset" in err
    code, out, _ = invoke("score", tmp_path, "--ruleset", "self", "--format", "csv")
    assert code == 0 and list(pd.read_csv(io.StringIO(out))["submission"]) == ["b"]


@pytest.mark.parametrize("args, message", [
    (["--baseline", "adamv"], "did you mean: adamw"),
    (["--tau-max", "1"], "--tau-max must be greater than 1"),
    (["--baseline", "adamw", "--by", "steps"], "use it with --by time"),
    (["--variant-rule", "vit=resnet"], "no base 'resnet/small'"),
])
def test_bad_options_are_user_errors(results, args, message):
    code, _, err = invoke("score", results, *args)
    assert code == 2 and message in err


def test_no_trials_says_where_it_looked(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    code, _, err = invoke("score", tmp_path / "empty")
    assert code == 2 and "no finished trials found under" in err and "empty" in err
    monkeypatch.chdir(tmp_path)
    code, _, err = invoke("score")
    assert code == 2 and "'results' does not exist" in err


def test_warnings_name_the_skipped_file(results, tmp_path):
    root = tmp_path / "r"
    shutil.copytree(results, root)
    broken = root / "gpt2" / "small" / "sgd" / "study0-trial0" / "summary.json"
    broken.write_text("{")
    write_trial(root, submission="sgd", study=9, finished=False)
    code, _, err = invoke("score", root, "--format", "csv")
    assert code == 0 and str(broken) in err and "corrupt JSON" in err
    assert "1 unfinished trial(s)" in err


def test_leaderboard_marks_failures_and_names_hardware(tmp_path):
    write_study_grid(tmp_path, {("fast", "gpt2"): [[10]], ("slow", "gpt2"): [[50]],
                                ("fast", "vit"): [[INF]], ("slow", "vit"): [[5]]})
    code, out, _ = invoke("leaderboard", tmp_path)
    assert code == 0
    assert "ratio > 4" in out and "not reached" in out and "hardware: cpu-test" in out


@pytest.mark.parametrize("suffix, magic", [("png", b"\x89PNG"), ("svg", b"<?xml"),
                                           ("pdf", b"%PDF")])
def test_plot_profile_formats(results, tmp_path, suffix, magic):
    out = tmp_path / f"profile.{suffix}"
    code, _, _ = invoke("plot", "profile", results, "--out", out, "--bootstrap", "100")
    assert code == 0 and out.read_bytes().startswith(magic) and out.stat().st_size > 5_000


def test_plot_curves_png_is_not_blank(results, tmp_path):
    out = tmp_path / "curves.png"
    assert invoke("plot", "curves", results, "--out", out)[0] == 0
    assert distinct_colours(out) > 50


def test_plot_unknown_extension_is_refused(results, tmp_path):
    code, _, err = invoke("plot", "profile", results, "--out", tmp_path / "p.jpg")
    assert code == 2 and "unknown extension '.jpg'" in err and ".png" in err
    assert not (tmp_path / "p.jpg").exists()


def distinct_colours(png) -> int:
    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    return len(np.unique(pixels, axis=0))


def test_report_is_self_contained(results, tmp_path):
    out = tmp_path / "report.html"
    code, _, _ = invoke("report", results, "--out", out, "--baseline", "adamw")
    assert code == 0
    html = out.read_text()
    assert html.count("data:image/png;base64,") == 2
    for needle in ["Leaderboard", "Hardware", "cpu-test", "Performance profiles",
                   "Validation curves", "gpt2/small", "vit/small", "speedup vs adamw"]:
        assert needle in html
    assert "src=\"http" not in html and "href=\"http" not in html


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="chromium is not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(results, tmp_path):
    out = tmp_path / "report.html"
    assert invoke("report", results, "--out", out)[0] == 0
    shot = tmp_path / "shot.png"
    command = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'chromium'}", f"--screenshot={shot}",
               "--window-size=1200,900", out.resolve().as_uri()]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    assert shot.exists() and distinct_colours(shot) > 100
