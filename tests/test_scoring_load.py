"""Loading results folders and published tables: bad files are skipped with a reason, never
fatal, and good trials are never dropped."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from test_scoring_helpers import fake_evals, summary_dict, write_trial

from algobench.errors import UserError
from scoring.load import load_results, load_table

INF = math.inf


@pytest.fixture
def results(tmp_path):
    """Three good trials; tests then damage or add files around them."""
    root = tmp_path / "results"
    for study, time_s in enumerate([100.0, 120.0, INF]):
        write_trial(root, submission="adamw", study=study, time_s=time_s)
    return root


def reasons(loaded) -> dict[str, str]:
    return {s.path.parent.name + "/" + s.path.name: s.reason for s in loaded.skipped}


def test_good_trials_are_all_read(results):
    loaded = load_results([results])
    assert len(loaded.trials) == 3 and not loaded.skipped and not loaded.unfinished
    assert sorted(loaded.trials["time_to_target_s"]) == [100.0, 120.0, INF]
    assert loaded.trials["steps_to_target"].max() == INF
    assert len(loaded.evals) == 60


@pytest.mark.parametrize("content, reason", [
    ("{not json", "corrupt JSON"),
    ('{"schema_version": 1, "trial_id": "x"', "corrupt JSON"),  # cut short
    ("[1, 2, 3]", "not an algobench summary.json"),
    ('{"name": "some other tool"}', "not an algobench summary.json"),
    ('{"schema_version": 3}', "unsupported schema_version 3"),
    ('{"schema_version": 2}', "invalid summary"),
])
def test_bad_summary_is_skipped_with_reason(results, content, reason):
    bad = write_trial(results, submission="sgd", study=0)
    (bad / "summary.json").write_text(content)
    loaded = load_results([results])
    assert len(loaded.trials) == 3 and set(loaded.trials["submission"]) == {"adamw"}
    assert reason in reasons(loaded)["study0-trial0/summary.json"]


@pytest.mark.parametrize("field, value, message", [
    ("hardware_key", None, "hardware_key"),
    ("status", "exploded", "status"),
    ("time_to_target_s", "fast", "time_to_target_s"),
    ("budget_s", -1, "budget_s"),
])
def test_invalid_field_is_named(results, field, value, message):
    summary = summary_dict(submission="sgd")
    if value is None:
        del summary[field]
    else:
        summary[field] = value
    bad = write_trial(results, submission="sgd")
    (bad / "summary.json").write_text(json.dumps(summary))
    loaded = load_results([results])
    assert len(loaded.trials) == 3
    reason = reasons(loaded)["study0-trial0/summary.json"]
    assert reason.startswith("invalid summary") and message in reason


def test_missing_eval_column_keeps_the_trial(results):
    evals = fake_evals(time_s=50.0, budget_s=1000.0).drop(columns=["val_loss"])
    write_trial(results, submission="sgd", time_s=50.0, evals=evals)
    loaded = load_results([results])
    assert "sgd" in set(loaded.trials["submission"])  # scored from its summary
    assert "sgd" not in set(loaded.evals["submission"])  # but it has no curve
    reason = reasons(loaded)["study0-trial0/evals.parquet"]
    assert "missing column(s) val_loss" in reason and "trial scored" in reason


def test_corrupt_parquet_keeps_the_trial(results):
    folder = write_trial(results, submission="sgd", time_s=50.0)
    (folder / "evals.parquet").write_bytes(b"PAR1 this is not parquet")
    loaded = load_results([results])
    assert len(loaded.trials) == 4
    assert "unreadable parquet" in reasons(loaded)["study0-trial0/evals.parquet"]
    assert not load_results([results], with_evals=False).skipped  # scoring alone never reads it


def test_unfinished_trial_is_counted_not_scored(results):
    folder = write_trial(results, submission="sgd", finished=False)
    loaded = load_results([results])
    assert loaded.unfinished == (folder.resolve(),) and len(loaded.trials) == 3


def test_duplicate_trial_id_is_skipped(results, tmp_path):
    copy = tmp_path / "copy"
    write_trial(copy, submission="adamw", study=0, time_s=100.0)
    loaded = load_results([results, copy])
    assert len(loaded.trials) == 3
    assert any("duplicate trial_id" in s.reason for s in loaded.skipped)


def test_same_folder_twice_is_read_once(results):
    assert len(load_results([results, results / "gpt2"]).trials) == 3


def test_plain_runs_are_studies_of_their_own(tmp_path):
    for seed in range(3):
        write_trial(tmp_path, study=None, trial=None, seed=seed, ruleset="self")
    trials = load_results([tmp_path]).trials
    assert trials["study"].isna().all() and trials["study_key"].nunique() == 3


def test_reached_without_time_is_skipped_by_the_writers_own_check(tmp_path):
    folder = write_trial(tmp_path)
    summary = json.loads((folder / "summary.json").read_text())
    summary["time_to_target_s"] = None
    (folder / "summary.json").write_text(json.dumps(summary))
    loaded = load_results([tmp_path])
    assert loaded.trials.empty
    assert "set exactly when the status is 'reached'" in loaded.skipped[0].reason


def test_schema_1_and_2_are_read_with_their_refined_and_contention_fields(tmp_path):
    write_trial(tmp_path, submission="old", time_s=100.0, schema=1)
    write_trial(tmp_path, submission="new", time_s=100.0, refined_time_s=80.0, refined_steps=800,
                contended=True, overrides={"budget_s": 60.0, "batch_size": 8})
    loaded = load_results([tmp_path])
    assert not loaded.skipped
    trials = loaded.trials.set_index("submission")
    assert trials.at["old", "refined_time_to_target_s"] == INF  # none recorded: the caller falls back
    assert trials.at["old", "contended"] is None and trials.at["old", "settings"] == "default"
    assert trials.at["new", "refined_time_to_target_s"] == 80.0
    assert trials.at["new", "refined_steps_to_target"] == 800
    assert trials.at["new", "contended"] is True
    assert trials.at["new", "contention"]["run_queue_mean"] == 3.9
    assert trials.at["new", "settings"] == "batch_size=8, budget_s=60"


def test_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_results([tmp_path / "nope"])


# --- published tables ----------------------------------------------------------------------------


def write_csv(tmp_path, text: str):
    path = tmp_path / "table.csv"
    path.write_text(text)
    return path


def test_table_reads_seconds_and_failures(tmp_path):
    table = load_table(write_csv(tmp_path, "submission,wmt,ogbg\na, 10,inf\nb,,2.5\n"))
    assert table.times.to_dict() == {"wmt": {"a": 10.0, "b": INF}, "ogbg": {"a": INF, "b": 2.5}}
    assert table.budgets is None


def test_table_budget_row(tmp_path):
    table = load_table(write_csv(tmp_path, "submission,wmt\na,10\nbudget_s,100\n"))
    assert list(table.times.index) == ["a"]
    assert table.budgets.to_dict() == {"wmt": 100.0}


@pytest.mark.parametrize("text, message", [
    ("name,wmt\na,1\n", "no 'submission' column"),
    ("submission,wmt\na,1\nb,fast\n", "line 3 (b), column 'wmt': 'fast' is not a number"),
    ("submission,wmt\na,-3\n", "line 2 (a), column 'wmt'"),
    ("submission,wmt\na,1\na,2\n", "'a' appears more than once"),
    ("submission\na\n", "at least one workload column"),
    ("", "not a readable CSV"),
])
def test_bad_table_names_file_row_and_column(tmp_path, text, message):
    path = write_csv(tmp_path, text)
    with pytest.raises(UserError) as error:
        load_table(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_empty_results_give_empty_frames(tmp_path):
    loaded = load_results([tmp_path])
    assert loaded.trials.empty and loaded.evals.empty
    assert isinstance(loaded.trials, pd.DataFrame)
