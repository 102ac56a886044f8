"""Against a real one-node SLURM cluster (slurm/cluster.sh, started once for this module).

The jobs run the GPT-2 smoke trial with batch 4 and one CPU per task. The resume test uses
AdamW with a step that sleeps 0.2 s (CPU-free), so that a trial outlasts SLURM's time-limit
checks, which run every 30 s, without burning the two cores the tests have; the cluster declares
6 CPUs so that its five tasks run at once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from algobench.slurm import profile as slurm_profile
from algobench.slurm import submit as dispatch
from algobench.slurm.jobs import slurm_states
from algobench.specs import RunOptions, TrialConfig
from tests.helpers import cli, sleeping_submission

pytestmark = [pytest.mark.slurm, pytest.mark.xdist_group("exclusive")]  # one cluster, one worker
ROOT = Path(__file__).resolve().parent.parent
SLOW_ADAMW = sleeping_submission("adamw", 0.2)  # a slow step that costs no CPU


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """slurm/cluster.sh start, and stop at the end (unless it was already up). Yields the start
    time: sacct queries from then on cannot meet older jobs that had the same ids."""
    if os.geteuid() != 0:
        pytest.skip("the SLURM test cluster needs root (it starts munge, mariadb, slurmdbd, slurmctld, slurmd)")
    script = ROOT / "slurm" / "cluster.sh"
    env = os.environ | {"ALGOBENCH_SLURM_CPUS": "6", "ALGOBENCH_SLURM_INSTALL": "0"}
    was_up = shutil.which("sinfo") is not None and subprocess.run(
        ["sinfo", "-h"], capture_output=True, timeout=10).returncode == 0
    if not was_up:
        t0 = time.perf_counter()
        res = subprocess.run(["bash", str(script), "start"], capture_output=True, text=True, env=env, timeout=300)
        if res.returncode != 0:
            tail = " | ".join((res.stdout + res.stderr).strip().splitlines()[-6:])
            pytest.skip(f"the SLURM daemons could not start (slurm/cluster.sh start): {tail}")
        print(f"SLURM cluster started in {time.perf_counter() - t0:.1f} s")
    yield datetime.now(timezone.utc).isoformat(timespec="seconds")
    if not was_up:
        subprocess.run(["bash", str(script), "stop"], capture_output=True, env=env, timeout=120)


def trial_config(data_dir: Path, results_dir: Path, submission: str = "adamw", **options) -> TrialConfig:
    options = {"max_steps": 20, "eval_period_steps": 10, "batch_size": 4, "device": "cpu"} | options
    return TrialConfig(workload="gpt2", size="smoke", submission=submission, seed=1, data_dir=data_dir,
                       results_dir=results_dir, study=options.pop("study", None), trial=options.pop("trial", None),
                       options=RunOptions(**options))


def eval_history(trial_dir: Path) -> list[tuple]:
    """The rows as tuples; a split not evaluated at a step (the test split before the end) reads None."""
    df = pd.read_parquet(trial_dir / "evals.parquet")[["step", "val_loss", "test_loss"]]
    return list(df.astype(object).where(df.notna(), None).itertuples(index=False, name=None))


def until(condition, timeout_s: float, what: str, poll_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def test_run_executor_slurm_wait_lands_where_a_local_run_does(cluster, data_dir, tmp_path):
    results = tmp_path / "results"
    res = cli("run", "--workload", "gpt2", "--submission", "adan", "--size", "smoke", "--executor", "slurm",
              "--wait", "--cluster", "dev", "--max-steps", "10", "--eval-every-steps", "5", "--batch-size", "4",
              "--device", "cpu", "--data-dir", str(data_dir), "--results-dir", str(results), timeout=240)
    assert res.returncode == 0, res.stdout + res.stderr
    job_id = re.search(r"submitted SLURM job (\d+)", res.stdout).group(1)
    [trial] = (results / "gpt2" / "smoke" / "adan").glob("run-*-seed0")  # a local run's folder name
    summary = json.loads((trial / "summary.json").read_text())
    assert summary["status"] == "not_reached" and summary["steps"] == 10 and summary["requeues"] == 0
    assert "time-to-target" in res.stdout and not (trial / "checkpoint.pt").exists()

    listed = json.loads(cli("jobs", "--results-dir", str(results), "--format", "json").stdout)
    assert [(r["job_id"], r["state"], r["trial_status"], r["trial_dir"]) for r in listed] == \
        [(job_id, "COMPLETED", "not_reached", str(trial))]
    assert "Starting with JobEnvironment" in Path(listed[0]["stdout"]).read_text()


def test_a_job_sbatch_refuses_is_a_one_line_error(cluster, data_dir, tmp_path):
    from tests.test_cli import assert_user_error

    res = cli("run", "--workload", "gpt2", "--submission", "adan", "--executor", "slurm", "--slurm",
              "partition=nowhere", "--data-dir", str(data_dir), "--results-dir", str(tmp_path / "results"))
    assert_user_error(res, "sbatch refused the job", "invalid partition")
    assert not list((tmp_path / "results").rglob("run-*"))  # no empty trial folder left behind


def test_tune_of_four_trials_runs_as_one_array_job(cluster, data_dir, tmp_path):
    results = tmp_path / "results"
    res = cli("tune", "--workload", "gpt2", "--submission", "adan", "--trials", "4", "--jobs", "2",
              "--max-steps", "6", "--eval-every-steps", "6", "--device", "cpu", "--executor", "slurm",
              "--cluster", "dev", "--data-dir", str(data_dir), "--results-dir", str(results), timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    array_id = re.search(r"4 trials submitted as job (\d+)", " ".join(res.stdout.split())).group(1)
    script = (results / "_jobs" / array_id / f"{array_id}_submission.sh").read_text()
    assert "#SBATCH --array=0-3%2" in script  # one array, at most --jobs 2 tasks at once
    until(lambda: {s for s, _ in slurm_states([array_id], since=cluster).values()} == {"COMPLETED"}, 60,
          "sacct to show the four tasks COMPLETED")
    listed = json.loads(cli("jobs", "--results-dir", str(results), "--format", "json").stdout)
    assert [(r["job_id"], r["kind"], r["state"], r["trial_status"]) for r in listed] == \
        [(f"{array_id}_{i}", "tune", "COMPLETED", "not_reached") for i in range(4)]
    folders = sorted(Path(r["trial_dir"]).name for r in listed)
    assert folders == [f"study1-trial{i}" for i in range(1, 5)]  # where a local tune puts them
    for folder in folders:
        summary = json.loads((results / "gpt2" / "smoke" / "adan" / folder / "summary.json").read_text())
        assert summary["study"] == 1 and summary["steps"] == 6


def test_cancel_stops_the_job_and_leaves_the_trial_unfinished(cluster, data_dir, tmp_path):
    slow = tmp_path / "slow_adamw.py"
    slow.write_text(SLOW_ADAMW)
    [sub] = dispatch.submit_trials([trial_config(data_dir, tmp_path / "results", str(slow), max_steps=1000)],
                                   profile=slurm_profile.load_profile("dev"), cluster="dev")
    state = lambda: slurm_states([sub.job.job_id], since=cluster).get(sub.job.job_id, ("",))[0]  # noqa: E731
    until(lambda: state() == "RUNNING", 60, "the job to run")
    res = cli("cancel", sub.job.job_id, "--results-dir", str(tmp_path / "results"))
    assert res.returncode == 0 and "cancelled job" in res.stdout, res.stderr
    until(lambda: state() == "CANCELLED", 60, "sacct to show the job CANCELLED")
    assert not (sub.trial_dir / "summary.json").exists()


def test_a_preemption_while_the_job_starts_is_not_lost(cluster, data_dir, tmp_path):
    """SIGTERM + USR2 before submitit has installed its handlers (it unpickles the job first,
    which imports torch): the job survives, suspends at step 0, is requeued and finishes."""
    [sub] = dispatch.submit_trials([trial_config(data_dir, tmp_path / "results", max_steps=10)],
                                   profile=slurm_profile.load_profile("dev"))
    until(lambda: sub.stdout.exists() and "Loading pickle" in sub.stdout.read_text(), 60, "the job to start",
          poll_s=0.05)
    sub.job._interrupt()
    [summary] = dispatch.wait([sub])
    assert summary is not None and summary["requeues"] == 1 and summary["steps"] == 10
    assert "resumed from step 0" in sub.stdout.read_text()


def test_preempted_time_limited_and_ddp_jobs_resume_with_the_same_eval_history(cluster, data_dir, tmp_path):
    """Four jobs of one trial, at once: uninterrupted; preempted through submitit
    (`job._interrupt()`); with a real 1-minute time limit (SLURM sends USR2 30 s before it); and
    as 2 DDP tasks (gloo), preempted. The interrupted ones are checkpointed, requeued and resumed;
    they end with the uninterrupted eval history: exactly, and within DDP_RTOL for DDP."""
    from tests.test_ddp import DDP_RTOL

    slow = tmp_path / "slow_adamw.py"
    slow.write_text(SLOW_ADAMW)
    config = trial_config(data_dir, tmp_path / "results", str(slow), max_steps=200, eval_period_steps=50)
    dev = slurm_profile.load_profile("dev", ["max_requeues=5"])
    [plain], [preempted] = (dispatch.submit_trials([config], profile=dev) for _ in range(2))
    [limited] = dispatch.submit_trials([config], profile=slurm_profile.load_profile(
        "dev", ["time_limit_min=1", "signal_delay_s=30", "max_requeues=5"]))
    [ddp] = dispatch.submit_trials([config], profile=slurm_profile.load_profile("dev", ["tasks_per_node=2",
                                                                                   "max_requeues=5"]))
    t0 = time.monotonic()

    # Preempt two jobs after their first eval. The time limit's USR2 comes at one of SLURM's 30 s
    # checks; once the job is checkpointed, give its next attempt room to finish.
    todo = {"preempt": [preempted, ddp], "limit": [limited]}
    seen_s = {}
    while todo["preempt"] or todo["limit"]:
        assert time.monotonic() - t0 < 150, f"still waiting for {todo}"
        for sub in [s for s in todo["preempt"] if (s.trial_dir / "evals.parquet").exists()]:
            sub.job._interrupt()  # SIGTERM, then USR2: what SLURM does before a preemption
            todo["preempt"].remove(sub)
        if todo["limit"] and (limited.trial_dir / "checkpoint.pt").exists():
            seen_s["checkpoint"] = time.monotonic() - t0
            subprocess.run(["scontrol", "update", f"JobId={limited.job.job_id}", "TimeLimit=10"], check=True)
            todo["limit"] = []
        time.sleep(0.2)

    summaries = dispatch.wait([plain, preempted, limited, ddp])
    assert [s and s["status"] for s in summaries] == ["not_reached"] * 4, [s and s["reason"] for s in summaries]
    assert [s["requeues"] >= 1 for s in summaries] == [False, True, True, True]
    reference = eval_history(plain.trial_dir)
    assert [step for step, *_ in reference] == [50, 100, 150, 200]
    assert eval_history(preempted.trial_dir) == reference
    assert eval_history(limited.trial_dir) == reference
    got = eval_history(ddp.trial_dir)
    assert [r[0] for r in got] == [50, 100, 150, 200]
    for (_, *a), (_, *b) in zip(reference, got):
        assert b == pytest.approx(a, rel=DDP_RTOL)
    assert len(list(ddp.trial_dir.parent.iterdir())) == 4  # one folder per job: DDP's rank 1 wrote nothing
    assert "global_rank=1(2)" in ddp.job.paths.stdout.with_name(f"{ddp.job.job_id}_1_log.out").read_text()
    for sub in (preempted, limited, ddp):  # a resumed trial keeps its id and leaves no checkpoint
        assert not (sub.trial_dir / "checkpoint.pt").exists()
        assert pd.read_parquet(sub.trial_dir / "evals.parquet")["submission_time_s"].is_monotonic_increasing
        assert json.loads((sub.trial_dir / "metadata.json").read_text())["trial_id"] == \
            json.loads((sub.trial_dir / "summary.json").read_text())["trial_id"]
    # The clock holds the steps (200 sleeps of 0.2 s and the compute), not the time between the
    # suspended attempt's exit and the next one's start: the two trials took the same time.
    log = limited.stdout.read_text()
    assert "this job is timed-out" in log and "resumed from step" in log
    gap_s = sum(restart_gaps_s(log))
    assert gap_s >= 5  # the requeued job waits cred_expire (5 s) before it may start again
    times = [s["submission_time_s"] for s in summaries]
    assert times[2] >= 40 and abs(times[2] - times[0]) < gap_s - 2, (times, gap_s)
    print(f"time limit checkpoint seen {seen_s['checkpoint']:.0f} s after submission; restart gaps {gap_s:.1f} s; "
          f"submission times {[round(t, 1) for t in times]}")


def restart_gaps_s(log: str) -> list[float]:
    """Seconds from each suspended attempt's exit to the next attempt's start (submitit's log lines)."""
    pattern = r"\((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})\) - (Exiting gracefully|Starting with)"
    events = [(m.group(3), time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000)
              for m in re.finditer(pattern, log)]
    return [b[1] - a[1] for a, b in zip(events, events[1:]) if a[0] == "Exiting gracefully" and b[0] == "Starting with"]
