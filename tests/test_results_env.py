"""Every command that reads results honours ALGOBENCH_RESULTS_DIR: with a ./results beside it
holding other trials, each reads the folder the variable names (issue 14)."""

from __future__ import annotations

import json

import pytest

from tests.test_scoring_helpers import invoke, write_study_grid

COMMANDS = [
    ("score", "--format", "json"),
    ("leaderboard", "--format", "json"),
    ("report", "--out", "report.html"),
    ("plot", "profile", "--out", "profile.png"),
    ("plot", "curves", "--out", "curves.png"),
    ("runs", "--format", "json"),
]


@pytest.fixture
def two_result_folders(tmp_path, monkeypatch):
    """$ALGOBENCH_RESULTS_DIR holds adamw and adan; ./results holds only sgd_decoy."""
    chosen, decoy = tmp_path / "chosen", tmp_path / "results"
    write_study_grid(chosen, {("adamw", "gpt2"): [[100.0]], ("adan", "gpt2"): [[50.0]]})
    write_study_grid(decoy, {("sgd_decoy", "gpt2"): [[10.0]], ("other_decoy", "gpt2"): [[20.0]]})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ALGOBENCH_RESULTS_DIR", str(chosen))
    return tmp_path


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_reading_commands_honour_the_results_env_var(two_result_folders, monkeypatch, command):
    """Pointed at a folder that does not exist, each command says so, though ./results has trials."""
    missing = two_result_folders / "nowhere"
    monkeypatch.setenv("ALGOBENCH_RESULTS_DIR", str(missing))
    code, out, err = invoke(*command)
    assert code == 2 and str(missing) in err, (code, out[-500:], err)


@pytest.mark.parametrize("command", [c for c in COMMANDS if c[0] in ("score", "runs", "report")],
                         ids=lambda c: c[0])
def test_reading_commands_read_the_folder_the_env_var_names(two_result_folders, command):
    code, out, err = invoke(*command)
    assert code == 0, err
    text = (two_result_folders / "report.html").read_text() if command[0] == "report" else out
    assert "adan" in text and "decoy" not in text, text[:2000]
    if command[0] == "runs":
        assert {r["submission"] for r in json.loads(out)} == {"adamw", "adan"}
