"""`algobench tune` and `algobench runs` end to end: real (short) trials, worker processes,
offline W&B runs, resume after a killed trial, the self-tuning ruleset."""

from __future__ import annotations

import json
import shutil
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from algobench.layout import validate_summary

from algobench import submission as submission_lib
from algobench import tuning
from algobench.specs import RunOptions, TrialConfig
from tests.helpers import sleeping_submission
from tests.test_tracking import history_rows, read_wandb_records, wandb_env

SHORT = ("--max-steps", "6", "--eval-every-steps", "6", "--log-every-steps", "3")
STUDY = ("tune", "-w", "gpt2", "-s", "adan", "--trials", "2", "--studies", "2", *SHORT)


def algobench(*args: str, env: dict, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from algobench.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def summaries(results: Path, submission: str = "adan") -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in results.glob(f"gpt2/smoke/{submission}/*/summary.json")}


# Adan with a step that also sleeps 0.1 s: the trial caught mid-way is still running
# when the signal lands, on a fast idle machine too (20 plain steps take about a second there).
SLOW_ADAN = sleeping_submission("adan", 0.1)


@pytest.fixture(scope="module")
def parallel_study(tmp_path_factory, data_dir):
    """2 studies x 2 trials, 2 at a time, logged to W&B offline (no API key anywhere)."""
    root = tmp_path_factory.mktemp("study")
    env = wandb_env(root)
    res = algobench(*STUDY, "--jobs", "2", "--wandb", "--data-dir", str(data_dir),
                    "--results-dir", str(root / "results"), env=env, cwd=root)
    assert res.returncode == 0, res.stdout + res.stderr
    return root, env, res


@pytest.mark.xdist_group("parallel_study")  # the study is run once (28-36 s), not once per xdist worker
def test_tune_runs_each_trial_with_its_hyperparameters(parallel_study):
    root, _env, res = parallel_study
    found = summaries(root / "results")
    assert sorted(found) == ["study1-trial1", "study1-trial2", "study2-trial1", "study2-trial2"]
    space = tuning.parse_search_space(submission_lib.load("adan").search_space, source="adan")
    base = TrialConfig(workload="gpt2", submission="adan", options=RunOptions(max_steps=6))
    planned = tuning.study_configs(base, space=space, trials=2, studies=2, seed=0, base_budget_s=120)
    defaults = submission_lib.load("adan").defaults
    for config in planned:
        summary = found[f"study{config.study}-trial{config.trial}"]
        assert (summary["study"], summary["trial"], summary["seed"]) == (config.study, config.trial, config.seed)
        assert summary["hparams"] == {**defaults, **config.hparams}
        assert summary["steps"] == 6 and summary["status"] in ("reached", "not_reached")
    assert "4/4 done" in " ".join(res.stdout.split())


@pytest.mark.xdist_group("parallel_study")
def test_every_trial_has_an_offline_wandb_run_grouped_by_study(parallel_study):
    root, _env, res = parallel_study
    for folder in sorted((root / "results" / "gpt2" / "smoke" / "adan").iterdir()):
        (run_file,) = folder.glob("wandb/offline-run-*/run-*.wandb")
        records = read_wandb_records(run_file)
        run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
        study, trial = folder.name.removeprefix("study").split("-trial")
        assert run.run_group == f"gpt2-smoke-adan-external-seed0-study{study}"
        assert run.job_type == "tune" and {f"study:{study}", f"trial:{trial}"} <= set(run.tags)
        assert [r["step"] for r in history_rows(records) if "train/loss" in r] == [3, 6]
    out = " ".join(res.stdout.split())
    assert "logging offline" in out and "4 offline run(s)" in out and "wandb sync" in out


@pytest.mark.xdist_group("parallel_study")
def test_rerun_does_no_work(parallel_study, data_dir):
    root, env, _res = parallel_study
    before = summaries(root / "results")
    res = algobench(*STUDY, "--jobs", "2", "--wandb", "--data-dir", str(data_dir),
                    "--results-dir", str(root / "results"), env=env, cwd=root)
    assert res.returncode == 0, res.stdout + res.stderr
    out = " ".join(res.stdout.split())
    assert "skipping 4 finished trial(s)" in out and "all 4 trials are finished: nothing to do" in out
    assert summaries(root / "results") == before
    assert len(list((root / "results").rglob("run-*.wandb"))) == 4


@pytest.mark.xdist_group("parallel_study")
def test_sequential_study_lands_where_the_parallel_one_does(parallel_study, data_dir, tmp_path):
    root, env, _res = parallel_study
    res = algobench(*STUDY, "--jobs", "1", "--data-dir", str(data_dir), "--results-dir", str(tmp_path / "r"),
                    env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    sequential, parallel = summaries(tmp_path / "r"), summaries(root / "results")
    assert sorted(sequential) == sorted(parallel)
    for name, summary in sequential.items():
        assert (summary["seed"], summary["hparams"]) == (parallel[name]["seed"], parallel[name]["hparams"])


@pytest.mark.xdist_group("parallel_study")
def test_runs_lists_and_filters_the_trials(parallel_study):
    root, env, _res = parallel_study
    res = algobench("runs", str(root / "results"), "--study", "2", "--format", "json", env=env, cwd=root)
    rows = json.loads(res.stdout)
    assert [(r["study"], r["trial"]) for r in rows] == [(2, 1), (2, 2)]
    assert all(r["hparams"]["learning_rate"] > 0 and r["status"] == "not_reached" for r in rows)
    table = algobench("runs", str(root / "results"), env=env, cwd=root, timeout=120).stdout
    assert "study1-trial2" in table and "learning_rate=" in table
    none = algobench("runs", str(root / "results"), "--submission", "adamw", env=env, cwd=root, timeout=120)
    assert "no trials found matching the filters" in none.stdout


@pytest.mark.xdist_group("parallel_study")
def test_score_ranks_the_study(parallel_study, tmp_path):
    """Two submissions' studies, one reaching the target in half the other's time: score ranks them."""
    root, env, _res = parallel_study
    for name, time_s in (("adan", 10.0), ("fast", 5.0)):
        target = tmp_path / "results" / "gpt2" / "smoke" / name
        shutil.copytree(root / "results" / "gpt2" / "smoke" / "adan", target)
        for path in target.glob("*/summary.json"):
            summary = json.loads(path.read_text())
            steps = summary["steps"]
            summary.update(submission=name, status="reached", reason="target reached", time_to_target_s=time_s,
                           steps_to_target=steps, submission_time_s=time_s, refined_time_to_target_s=time_s,
                           refined_steps_to_target=steps, trial_id=f"{name}-{summary['trial_id']}")
            validate_summary(summary)
            path.write_text(json.dumps(summary))
    res = algobench("score", str(tmp_path / "results"), "--format", "json", "--allow-contended", env=env, cwd=root,
                    timeout=120)  # (the 2-core test machine is busy: its trials may be contended)
    assert res.returncode == 0, res.stdout + res.stderr
    records = json.loads(res.stdout)
    assert [r["submission"] for r in sorted(records, key=lambda r: -r["score"])] == ["fast", "adan"]
    assert records[0]["score"] != records[1]["score"]


def _worker_of(trial_folder: Path) -> int | None:
    """The pid of the worker process running the trial in `trial_folder` (its last argument)."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"worker_main()" in b" ".join(argv) and str(trial_folder).encode() in argv:
            return int(proc.name)
    return None


def _mid_way(folders: list[Path], proc: subprocess.Popen, timeout_s: float = 300) -> tuple[Path, int]:
    """A trial folder that evaluated at least once but has not finished, and its worker's pid."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        victim = next((f for f in folders if (f / "evals.parquet").exists() and not (f / "summary.json").exists()),
                      None)
        pid = _worker_of(victim) if victim else None
        if pid is not None:
            return victim, pid
        time.sleep(0.05)
    raise AssertionError("no trial was caught mid-way")


def test_resume_after_a_killed_trial_and_after_ctrl_c(tmp_path, data_dir):
    env = wandb_env(tmp_path)
    (tmp_path / "slow_adan.py").write_text(SLOW_ADAN)
    args = ("tune", "-w", "gpt2", "-s", str(tmp_path / "slow_adan.py"), "--trials", "3", "--jobs", "2",
            "--max-steps", "20", "--eval-every-steps", "5", "--data-dir", str(data_dir),
            "--results-dir", str(tmp_path / "results"))
    # Ctrl-C's SIGINT reaches a process whose SIGINT is not ignored: a suite started in the background
    # by a script (`pytest ... &`) hands its processes SIGINT ignored, and tune then ran to the end.
    code = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); from algobench.cli import main; main()"
    command = [sys.executable, "-c", code, *args]
    folders = [tmp_path / "results" / "gpt2" / "smoke" / "slow_adan" / f"study1-trial{i}" for i in (1, 2, 3)]

    # 1. one worker is killed mid-way: the others finish, the study says what did not
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    victim, pid = _mid_way(folders, proc)
    os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, out + err
    assert f"{victim.name} did not finish (killed by signal 9)" in " ".join(out.split())
    assert "1 trial(s) did not finish" in " ".join(err.split())
    first = summaries(tmp_path / "results", "slow_adan")
    assert sorted(first) == sorted(f.name for f in folders if f != victim)

    # 2. the re-run redoes it and is interrupted (Ctrl-C) mid-way: the trial stays unfinished
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _mid_way([victim], proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "interrupted" in err and "Traceback" not in err
    assert (victim / "evals.parquet").exists() and not (victim / "summary.json").exists()

    # 3. the next re-run finishes it; the others are not run again
    res = algobench(*args, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    out = " ".join(res.stdout.split())
    assert "skipping 2 finished trial(s)" in out
    assert f"redoing 1 unfinished trial(s) (their folders are removed): {victim.name}" in out
    final = summaries(tmp_path / "results", "slow_adan")
    assert sorted(final) == [f.name for f in folders]
    assert all(final[name] == summary for name, summary in first.items())  # none ran twice
    assert final[victim.name]["steps"] == 20


def test_self_tuning_study_in_one_process(tmp_path, data_dir):
    """--ruleset self: defaults, 1.5x budget; --jobs 1 runs the trials (and their W&B runs) in-process."""
    env = wandb_env(tmp_path, WANDB_MODE="offline")
    res = algobench("tune", "-w", "gpt2", "-s", "adan", "--ruleset", "self", "--studies", "2", "--max-steps", "3",
                    "--eval-every-steps", "3", "--wandb", "--data-dir", str(data_dir),
                    "--results-dir", str(tmp_path / "r"), env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    found = summaries(tmp_path / "r")
    assert sorted(found) == ["study1-trial1", "study2-trial1"]
    defaults = submission_lib.load("adan").defaults
    for name, summary in found.items():
        assert summary["ruleset"] == "self" and summary["budget_s"] == 180.0 and summary["hparams"] == defaults
        (run_file,) = (tmp_path / "r" / "gpt2" / "smoke" / "adan" / name).glob("wandb/offline-run-*/run-*.wandb")
        run = next(r.run for r in read_wandb_records(run_file) if r.WhichOneof("record_type") == "run")
        assert run.run_group == f"gpt2-smoke-adan-self-seed0-study{summary['study']}"
        assert "ruleset:self" in run.tags


@pytest.mark.parametrize("args,message", [
    (("--ruleset", "self", "--search-space", "VALID"), "the self-tuning ruleset has no search space"),
    (("--ruleset", "self", "--trials", "2"), "a self-tuning study is a single trial"),
    (("--search-space", "SPACE",), "learning_rate: min 0.1 > max 0.01"),
    (("--search-space", "OTHER",), "'lerning_rate' is not a hyperparameter of adan; did you mean: learning_rate"),
    (("--search-space", "TYPES",), "'learning_rate' must be a number"),
    (("--jobs", "0"), "--jobs must be at least 1"),
    (("--size", "huge"), "has no size 'huge'"),
])
def test_tune_bad_input_names_the_problem(tmp_path, args, message):
    from typer.testing import CliRunner

    from algobench.cli import app
    from algobench.errors import UserError

    files = {"VALID": {"learning_rate": {"min": 0.001, "max": 0.01, "scaling": "log"}},
             "SPACE": {"learning_rate": {"min": 0.1, "max": 0.01, "scaling": "log"}},
             "OTHER": {"lerning_rate": {"min": 0.001, "max": 0.01, "scaling": "log"}},
             "TYPES": {"learning_rate": {"feasible_points": ["fast"]}}}
    for name, content in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(content))
    args = tuple(str(tmp_path / f"{a}.json") if a in files else a for a in args)
    result = CliRunner().invoke(app, ["tune", "-w", "gpt2", "-s", "adan", *args, "--results-dir", str(tmp_path / "r")])
    assert isinstance(result.exception, UserError), result.output
    assert message in str(result.exception)
    assert not (tmp_path / "r").exists()


def test_tune_bad_input_is_one_line_exit_2(tmp_path):
    (tmp_path / "space.yaml").write_text("learning_rate: {min: 0.1, max: 0.01, scaling: log}\n")
    res = algobench("tune", "-w", "gpt2", "-s", "adan", "--search-space", str(tmp_path / "space.yaml"),
                    env=wandb_env(tmp_path), cwd=tmp_path, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stdout + res.stderr
    assert res.stderr.startswith("error: search space") and not res.stdout
