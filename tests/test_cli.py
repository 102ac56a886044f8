"""The command line as a user meets it: errors are one line with exit code 2, runs record results."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.helpers import cli


def assert_user_error(res, *fragments):
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    message = " ".join(res.stderr.split())
    for fragment in fragments:
        assert fragment in message, message


def test_unknown_workload_names_the_nearest(tmp_path):
    res = cli("run", "--workload", "gtp2", "--submission", "adan", cwd=tmp_path)
    assert_user_error(res, "unknown workload 'gtp2'", "gpt2")


def test_unknown_submission_names_the_nearest(tmp_path):
    res = cli("run", "--workload", "gpt2", "--submission", "adna", cwd=tmp_path)
    assert_user_error(res, "unknown submission 'adna'", "adan")


def test_submission_missing_a_function(tmp_path):
    path = tmp_path / "half.py"
    path.write_text("def make_optimizer(*, model, hparams, workload):\n    pass\n")
    res = cli("run", "--workload", "gpt2", "--submission", str(path), cwd=tmp_path)
    assert_user_error(res, "half.py is missing lr_schedule")


def test_submission_with_syntax_error(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("def make_optimizer(:\n")
    res = cli("run", "--workload", "gpt2", "--submission", str(path), cwd=tmp_path)
    assert_user_error(res, "broken.py, line 1")


@pytest.mark.parametrize("content,suffix,fragments", [
    ("lerning_rate: 0.1\n", ".yaml", ["'lerning_rate' is not a hyperparameter of adan", "learning_rate"]),
    ('{"learning_rate": "fast"}', ".json", ["'learning_rate' must be a number"]),
    ("learning_rate: [1, 2", ".yaml", ["is not valid yaml"]),
    ("- 1\n- 2\n", ".yaml", ["must hold mappings"]),
])
def test_invalid_hparams_file(tmp_path, content, suffix, fragments):
    path = tmp_path / f"hp{suffix}"
    path.write_text(content)
    res = cli("run", "--workload", "gpt2", "--submission", "adan", "--hparams", str(path), cwd=tmp_path)
    assert_user_error(res, str(path), *fragments)


def test_data_not_prepared_gives_the_command(tmp_path):
    res = cli("run", "--workload", "gpt2", "--submission", "adan", "--size", "small",
              "--data-dir", str(tmp_path / "nodata"), cwd=tmp_path)
    assert_user_error(res, f"algobench data prepare gpt2 --size small --data-dir {tmp_path / 'nodata'}")


def test_bad_size_and_option_values(tmp_path):
    assert_user_error(cli("run", "-w", "gpt2", "-s", "adan", "--size", "huge", cwd=tmp_path), "size")
    assert_user_error(cli("run", "-w", "gpt2", "-s", "adan", "--max-steps", "0", cwd=tmp_path), "--max-steps")


def test_list_workloads_and_submissions_as_json(tmp_path):
    rows = json.loads(cli("list", "workloads", "--format", "json", cwd=tmp_path).stdout)
    smoke = next(r for r in rows if r["workload"] == "gpt2" and r["size"] == "smoke")
    assert smoke["target"]["metric"] == "val_loss" and smoke["how_target_was_set"]
    assert {r["size"] for r in rows if r["workload"] == "gpt2"} == {"smoke", "small", "full"}
    subs = json.loads(cli("list", "submissions", "--format", "json", cwd=tmp_path).stdout)
    assert {"adamw", "nadamw", "adan"} <= {s["submission"] for s in subs}


def test_run_records_a_trial(tmp_path, data_dir):
    res = cli("run", "--workload", "gpt2", "--submission", "adan", "--max-steps", "12", "--eval-every-steps", "6",
              "--data-dir", str(data_dir), "--results-dir", str(tmp_path / "res"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "not_reached" in res.stdout and "time-to-target" in res.stdout
    (trial,) = list((tmp_path / "res" / "gpt2" / "smoke" / "adan").iterdir())
    summary = json.loads((trial / "summary.json").read_text())
    assert summary["status"] == "not_reached" and summary["steps"] == 12 and summary["time_to_target_s"] is None
    evals = pd.read_parquet(trial / "evals.parquet")
    assert list(evals["step"]) == [6, 12]
    assert {"step", "submission_time_s", "eval_time_s", "wall_time_s", "val_loss", "test_loss"} <= set(evals)
    meta = json.loads((trial / "metadata.json").read_text())
    assert meta["seed"] == 0 and len(meta["submission"]["sha256"]) == 64
    assert meta["hardware"]["cpu_count"] >= 1 and meta["versions"]["torch"]
    assert meta["hparams"]["beta1"] == 0.98


def test_failed_trial_exits_zero(tmp_path, data_dir):
    path = tmp_path / "raises.py"
    path.write_text("def init_optimizer_state(**kw):\n    return None\n"
                    "def update_params(**kw):\n    raise ValueError('bad update')\n")
    res = cli("run", "-w", "gpt2", "-s", str(path), "--data-dir", str(data_dir),
              "--results-dir", str(tmp_path / "res"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    (trial,) = list((tmp_path / "res" / "gpt2" / "smoke" / "raises").iterdir())
    summary = json.loads((trial / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["reason"] == "exception: ValueError: bad update"
    assert "raise ValueError" in summary["traceback"]


@pytest.mark.slow
def test_quickstart_reaches_the_target(tmp_path, data_dir):
    """README command 1: gpt2 with adan at smoke size reaches its target and says so."""
    res = cli("run", "--workload", "gpt2", "--submission", "adan", "--data-dir", str(data_dir),
              "--results-dir", str(tmp_path / "res"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "reached (target reached)" in res.stdout
    (trial,) = list((tmp_path / "res" / "gpt2" / "smoke" / "adan").iterdir())
    summary = json.loads((trial / "summary.json").read_text())
    assert summary["status"] == "reached" and summary["time_to_target_s"] < summary["budget_s"]
