"""Submitting trials as SLURM jobs (`slurm`) or through submitit in this process (`debug`): one
job, or one job array for a study; waiting for them. SLURM is a thin adapter over submitit."""

from __future__ import annotations

import contextlib
import io
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from algobench import layout
from algobench import submission as submission_lib
from algobench.errors import UserError, unknown
from algobench.slurm import jobs as job_records
from algobench.slurm.job import TrialJob
from algobench.slurm.profile import ClusterProfile, load_profile
from algobench.specs import TrialConfig
from algobench.study import TrialUpdate
from algobench.workload import ensure_trial_data
from workloads import WORKLOADS


@dataclass(frozen=True)
class Submitted:
    job: Any  # submitit.Job: .job_id, .state, .result(), .cancel()
    config: TrialConfig
    trial_dir: Path

    @property
    def stdout(self) -> Path:
        return self.job.paths.stdout

    @property
    def stderr(self) -> Path:
        return self.job.paths.stderr


def submit_trials(configs: Sequence[TrialConfig], *, executor: str = "slurm",
                  profile: ClusterProfile | None = None, cluster: str = "",
                  parallelism: int | None = None, kind: str = "run") -> list[Submitted]:
    """Submit `configs`: one job, or one job array (at most `parallelism` tasks at once).

    Trial folders are chosen (and created) here, exactly where a local run would put them; the
    data is checked, and prepared when that takes seconds, before anything is queued."""
    if executor not in ("slurm", "debug"):
        raise unknown("executor for submitting", executor, ["slurm", "debug"])
    if not configs:
        return []
    profile = profile or ClusterProfile()
    configs = [_absolute(c) for c in configs]
    for config in configs:
        ensure_trial_data(WORKLOADS.get(config.workload), config)
    results_dir = configs[0].results_dir
    ex = _executor(executor, job_records.jobs_dir(results_dir) / "%j", profile, parallelism)  # (made lazily)
    jobs_folder = job_records.jobs_dir(results_dir)
    before = set(jobs_folder.iterdir()) if jobs_folder.is_dir() else set()
    folders = [_reserve_trial_dir(c) for c in configs]
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # submitit prints sbatch's complaint too
            jobs = ex.submit_array([TrialJob(c, d) for c, d in zip(configs, folders)])
    except BaseException as err:  # leave no empty trial folder and none of submitit's files behind
        for folder in folders:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        for leftover in (set(jobs_folder.iterdir()) - before) if jobs_folder.is_dir() else ():
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
        if jobs_folder.is_dir() and not any(jobs_folder.iterdir()):
            jobs_folder.rmdir()
        if isinstance(err, (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError)):
            reason = " ".join(str(err).split()) or type(err).__name__
            raise UserError(f"sbatch refused the job: {reason}") from None
        raise
    submitted = [Submitted(job=j, config=c, trial_dir=d) for j, c, d in zip(jobs, configs, folders)]
    if executor == "slurm":
        job_records.record(results_dir, kind=kind, cluster=cluster,
                           tasks=[(s.job.job_id, s.trial_dir, s.stdout, s.stderr) for s in submitted])
    return submitted


def _executor(kind: str, folder: Path, profile: ClusterProfile, parallelism: int | None) -> submitit.Executor:
    if kind == "debug":
        return submitit.DebugExecutor(folder)
    if shutil.which("sbatch") is None:
        raise UserError("no SLURM here (sbatch not found); on one machine start a cluster with "
                        "`slurm/cluster.sh start`, or run with --executor local")
    python = f"{shlex.quote(sys.executable)} -m algobench.slurm.entry"  # catches USR2 from the start
    ex = submitit.SlurmExecutor(folder, max_num_timeout=profile.max_requeues, python=python)
    params = profile.submitit_parameters()
    if parallelism is not None:
        params["array_parallelism"] = parallelism
    ex.update_parameters(job_name="algobench", **params)
    return ex


def _absolute(config: TrialConfig) -> TrialConfig:
    """Absolute data and results folders. (A submission given by path stays as given: the job
    runs in the folder it was submitted from, and the recorded config stays the user's.)"""
    return config.model_copy(update={"results_dir": config.results_dir.resolve(),
                                     "data_dir": config.data_dir.resolve()})


def _reserve_trial_dir(config: TrialConfig) -> Path:
    folder = layout.trial_dir(config, submission_lib.resolve(config.submission)[0])
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait(submitted: Sequence[Submitted], *, on_state: Callable[[str], None] = lambda state: None,
         poll_s: float = 2.0) -> list[dict | None]:
    """Block until every job ends; returns each trial's summary (None: the job did not finish it)."""
    pending = list(submitted)
    while pending:
        pending = [s for s in pending if not s.job.done()]
        if pending:
            on_state(", ".join(sorted({s.job.state for s in pending})))
            time.sleep(poll_s)
    _until_accounted(submitted, on_state=on_state, poll_s=poll_s)
    return [_summary_of(s) for s in submitted]


def _until_accounted(submitted: Sequence[Submitted], *, on_state: Callable[[str], None], poll_s: float,
                     limit_s: float = 120.0) -> None:
    """submitit calls a job done once its result file is written; SLURM's accounting says so a little
    later (the job is COMPLETING). Wait until `sacct` (or `squeue`) shows every job terminal, so
    that `algobench jobs` right after agrees (up to `limit_s`; debug jobs have no SLURM state)."""
    ids = [str(s.job.job_id) for s in submitted if not isinstance(s.job, submitit.DebugJob)]
    deadline = time.monotonic() + limit_s
    while ids and time.monotonic() < deadline:
        states = job_records.slurm_states(ids)
        busy = sorted({states[i][0] for i in ids if i in states and states[i][0] not in TERMINAL})
        if not busy:
            return
        on_state(", ".join(busy))
        time.sleep(min(poll_s, 1.0))


# SLURM job states after which a job never runs again (squeue/sacct names).
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
                      "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED"})


def _summary_of(s: Submitted) -> dict | None:
    summary = layout.read_summary(s.trial_dir)
    return summary.model_dump(mode="json") if isinstance(summary, layout.Summary) else None


@dataclass(frozen=True)
class ArrayExecutor:
    """A study's trials as one job array (`tune --executor slurm`), for `algobench.study.run_study`:
    submits them all, then reports each trial as it starts and ends."""

    executor: str  # slurm | debug
    profile: ClusterProfile
    cluster: str
    parallelism: int | None = None  # array tasks at once (default: the profile's array_parallelism)
    poll_s: float = 2.0

    def run(self, configs: Sequence[TrialConfig], *, tracking: Any, on_update: Callable[[Any], None]) -> None:
        subs = submit_trials(configs, executor=self.executor, profile=self.profile, cluster=self.cluster,
                             parallelism=self.parallelism, kind="tune")
        if not subs:
            return
        first = subs[0]
        on_update(TrialUpdate(first.trial_dir.name, "notice", detail=(
            f"{len(subs)} trials submitted as job {first.job.job_id.split('_')[0]} ({self.executor}); logs in "
            f"{first.stdout.parent.parent}" + ("; W&B logging is not done in SLURM jobs" if tracking else ""))))
        pending, started = {s.trial_dir.name: s for s in subs}, set()
        try:
            while pending:
                for name, sub in list(pending.items()):
                    if name not in started and (sub.trial_dir / layout.METADATA).exists():
                        started.add(name)
                        on_update(TrialUpdate(name, "started", step=0, time_s=0.0))
                    if sub.job.done():
                        del pending[name]
                        on_update(_ended_update(name, sub))
                if pending:
                    time.sleep(self.poll_s)
        except BaseException:  # Ctrl-C: as with local workers, the trials stop, unfinished
            for sub in pending.values():
                sub.job.cancel(check=False)
            raise


def _ended_update(name: str, sub: Submitted) -> TrialUpdate:
    summary = _summary_of(sub)
    if summary is None:
        return TrialUpdate(name, "crashed", detail=f"job {sub.job.job_id} ended without finishing the trial; "
                                              f"see {sub.stderr}")
    return TrialUpdate(name, "ended", step=summary["steps"], time_s=summary["submission_time_s"],
                  status=summary["status"], time_to_target_s=summary["time_to_target_s"], detail=summary["reason"])


def array_executor(executor: str, *, cluster: str, overrides: Sequence[str] = (),
                   parallelism: int | None = None) -> ArrayExecutor:
    """What `tune --executor slurm|debug --cluster NAME --slurm K=V --jobs N` runs its study on."""
    if executor not in ("slurm", "debug"):
        raise unknown("executor for a job array", executor, ["slurm", "debug"])
    return ArrayExecutor(executor=executor, profile=load_profile(cluster, overrides), cluster=cluster,
                         parallelism=parallelism)
