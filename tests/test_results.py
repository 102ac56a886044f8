"""Results are written atomically: a kill -9 at any moment leaves only complete files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from algobench.files import atomic_write, write_json
from algobench.layout import validate_summary


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "a" / "x.json"
    write_json(path, {"v": 1})
    write_json(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 2}
    assert os.listdir(path.parent) == ["x.json"]


def test_atomic_write_leaves_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "x.json"
    write_json(path, {"v": 1})
    with pytest.raises(ValueError):
        write_json(path, {"v": float("nan")})  # not valid JSON: refused before anything is written
    assert json.loads(path.read_text()) == {"v": 1}
    atomic_write(path, b"{}")
    assert os.listdir(tmp_path) == ["x.json"]


def valid_summary(**changes) -> dict:
    summary = {
        "schema_version": 2, "trial_id": "t1", "workload": "gpt2", "size": "smoke", "submission": "adamw",
        "framework": "torch", "ruleset": "external", "study": None, "trial": None, "seed": 0,
        "status": "reached", "reason": "target reached", "traceback": None,
        "target": {"metric": "val_loss", "value": 4.2, "mode": "min"},
        "time_to_target_s": 12.0, "steps_to_target": 100, "budget_s": 120.0, "steps": 100,
        "submission_time_s": 12.0, "eval_time_s": 1.0, "wall_time_s": 14.0, "final_metrics": {"val_loss": 4.1},
        "hardware": {}, "hardware_key": "cpu-test", "hparams": {"learning_rate": 1e-3}, "requeues": 0,
        "compile_time_s": None, "refined_time_to_target_s": 10.0, "refined_steps_to_target": 80,
    }
    return {**summary, **changes}


def test_a_consistent_summary_passes():
    assert validate_summary(valid_summary()).ttt_s == 10.0  # the refined crossing, when there is one
    assert validate_summary(valid_summary(refined_time_to_target_s=None, refined_steps_to_target=None)).ttt_s == 12.0


@pytest.mark.parametrize(("changes", "rule"), [
    ({"time_to_target_s": None}, "set exactly when the status is 'reached'"),
    ({"status": "not_reached", "reason": "budget exhausted", "refined_time_to_target_s": None,
      "refined_steps_to_target": None}, "set exactly when the status is 'reached'"),
    ({"steps_to_target": None}, "set exactly when the status is 'reached'"),
    ({"refined_steps_to_target": None}, "set together"),
    ({"refined_steps_to_target": 120, "steps": 200}, "cannot come after the eval"),
    ({"steps_to_target": 150, "refined_steps_to_target": 80}, "cannot exceed steps"),
    ({"status": "failed", "reason": "", "time_to_target_s": None, "steps_to_target": None,
      "refined_time_to_target_s": None, "refined_steps_to_target": None}, "names its reason"),
    ({"status": "done"}, "status"),
    ({"budget_s": 0}, "budget_s"),
    ({"surprise": 1}, "surprise"),
])
def test_summary_validation_catches_inconsistency(changes, rule):
    with pytest.raises(ValueError, match=rule):
        validate_summary(valid_summary(**changes))
    missing = valid_summary()
    del missing["hardware_key"]
    with pytest.raises(ValueError, match="hardware_key"):
        validate_summary(missing)


@pytest.mark.parametrize("kill_after_s", [0.0, 1.0, 2.5, 4.0])
def test_kill_9_leaves_no_partial_file(tmp_path, data_dir, kill_after_s):
    """Killed at any moment after it started writing, a trial leaves only whole files."""
    results = tmp_path / "res"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from algobench.cli import main; main()", "run", "-w", "gpt2", "-s", "adamw",
         "--eval-every-steps", "2", "--log-every-steps", "1", "--data-dir", str(data_dir),
         "--results-dir", str(results)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(results.rglob("metadata.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(kill_after_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    files = [path for path in results.rglob("*") if path.is_file()]
    assert any(path.name == "metadata.json" for path in files), f"the trial wrote nothing: {files}"
    for path in files:
        assert not path.name.endswith(".tmp"), f"partial file left: {path}"
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".parquet":
            assert len(pd.read_parquet(path)) >= 1
