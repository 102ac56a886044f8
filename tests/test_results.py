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

from algobench.results import atomic_write, validate_summary, write_json


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


def test_summary_validation_catches_inconsistency():
    with pytest.raises(ValueError, match="missing"):
        validate_summary({"status": "reached"})


@pytest.mark.parametrize("kill_after_s", [2.5, 4.0, 5.5, 7.0])
def test_kill_9_leaves_no_partial_file(tmp_path, data_dir, kill_after_s):
    results = tmp_path / "res"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from algobench.cli import main; main()", "run", "-w", "gpt2", "-s", "adamw",
         "--eval-every-steps", "2", "--log-every-steps", "1", "--data-dir", str(data_dir),
         "--results-dir", str(results)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(kill_after_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for path in results.rglob("*"):
        if path.is_dir():
            continue
        assert not path.name.endswith(".tmp"), f"partial file left: {path}"
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".parquet":
            assert len(pd.read_parquet(path)) >= 1
