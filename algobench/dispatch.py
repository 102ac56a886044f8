"""Where trials run: in this process (`local`), through submitit in this process (`debug`), or as
SLURM jobs (`slurm`).

SLURM is a thin adapter over submitit. A job runs `TrialJob`, which calls
`algobench.trial.execute` (the function a local run calls) on a trial folder chosen at
submission, so results land where a local run puts them. SLURM's warning signal (USR2,
`signal_delay_s` before a preemption or the time limit) makes the trial save its checkpoint at
the next step boundary; submitit then requeues the job and the trial goes on from the checkpoint
with its clock where it stopped. Several trials go out as one job array.

Cluster profiles are YAML files in slurm/profiles/ (or $ALGOBENCH_CLUSTERS_DIR), chosen with
`--cluster NAME` and overridden with `--slurm KEY=VALUE`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit
import yaml
from pydantic import Field, ValidationError

from algobench import checkpoint as ckpt
from algobench import distributed
from algobench import jobs as job_records
from algobench import submission as submission_lib
from algobench.errors import UserError, closest, unknown
from algobench.slurm_entry import EARLY_SIGNAL
from algobench.specs import Frozen, TrialConfig

EXECUTORS = ("local", "slurm", "debug")
PROFILES_ENV = "ALGOBENCH_CLUSTERS_DIR"
REPO_PROFILES = Path(__file__).resolve().parent.parent / "slurm" / "profiles"


class ClusterProfile(Frozen):
    """What a SLURM job asks for. Units are in the names; `sbatch` passes any other option on."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    nodes: int = Field(default=1, gt=0)
    tasks_per_node: int = Field(default=1, gt=0)  # processes per node: one per GPU for DDP
    gpus_per_node: int = Field(default=0, ge=0)
    cpus_per_task: int = Field(default=1, gt=0)
    mem_gb: float | None = Field(default=None, gt=0)
    time_limit_min: int = Field(default=60, gt=0)
    constraint: str | None = None
    setup: tuple[str, ...] = ()  # shell lines before the job starts, e.g. "module load cuda/12.4"
    signal_delay_s: int = Field(default=90, gt=0)  # USR2 this long before the time limit
    max_requeues: int = Field(default=3, ge=0)  # submitit's max_num_timeout
    array_parallelism: int = Field(default=8, gt=0)  # array tasks running at once
    sbatch: dict[str, Any] = Field(default_factory=dict)  # e.g. {"exclude": "node17", "mail-type": "END"}

    def submitit_parameters(self) -> dict[str, Any]:
        """The parameters of submitit's SlurmExecutor."""
        params: dict[str, Any] = {
            "nodes": self.nodes, "ntasks_per_node": self.tasks_per_node, "cpus_per_task": self.cpus_per_task,
            "time": self.time_limit_min, "signal_delay_s": self.signal_delay_s,
            "array_parallelism": self.array_parallelism, "setup": list(self.setup),
            "additional_parameters": dict(self.sbatch),
        }
        optional = {"partition": self.partition, "account": self.account, "qos": self.qos,
                    "constraint": self.constraint, "gpus_per_node": self.gpus_per_node or None,
                    "mem": f"{self.mem_gb:g}GB" if self.mem_gb else None}
        return params | {k: v for k, v in optional.items() if v is not None}


# --- cluster profiles ------------------------------------------------------------------------------

def profile_dirs() -> list[Path]:
    extra = os.environ.get(PROFILES_ENV)
    return ([Path(extra)] if extra else []) + [REPO_PROFILES]


def profile_names() -> list[str]:
    return sorted({p.stem for d in profile_dirs() if d.is_dir() for p in d.glob("*.yaml")})


def load_profile(name: str, overrides: Sequence[str] = ()) -> ClusterProfile:
    """Profile NAME (or a YAML file), with `key=value` overrides from the command line."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else next(
        (d / f"{name}.yaml" for d in profile_dirs() if (d / f"{name}.yaml").is_file()), None)
    if path is None:
        raise unknown("cluster profile", name, profile_names())
    if not path.is_file():
        raise UserError(f"cluster profile file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"cluster profile {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"cluster profile {path} must hold a mapping of option: value")
    _check_keys(data, str(path))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--slurm '{item}': write KEY=VALUE, e.g. --slurm partition=gpu")
        key = key.strip().replace("-", "_")
        _check_keys({key: None}, "--slurm")
        data[key] = yaml.safe_load(value)
    return _validated_profile(data, str(path))


def _check_keys(data: dict, source: str) -> None:
    fields = ClusterProfile.model_fields
    for key in data:
        if key not in fields:
            raise UserError(f"{source}: '{key}' is not a cluster option; did you mean: "
                            f"{', '.join(closest(key, fields))}?")


def _validated_profile(data: dict, source: str) -> ClusterProfile:
    try:
        return ClusterProfile(**data)
    except ValidationError as err:
        first = err.errors()[0]
        raise UserError(f"{source}: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None


# --- the job -------------------------------------------------------------------------------------

class TrialJob(submitit.helpers.Checkpointable):
    """What a job runs: one trial through `algobench.trial.execute`, resumable.

    submitit pickles this object, runs it in the job, and on requeue runs the same object again:
    the trial then finds its checkpoint in `trial_dir`."""

    def __init__(self, config: TrialConfig, trial_dir: Path) -> None:
        self.config, self.trial_dir = config, Path(trial_dir)

    def __call__(self) -> dict | None:
        from algobench.trial import TrialSuspended, execute

        done = self.trial_dir / "summary.json"
        if done.exists():  # requeued after the trial ended (a late signal): never run it twice
            return json.loads(done.read_text())
        env = submitit.JobEnvironment()
        _use_allocated_cpus()
        if env.num_tasks > 1:
            distributed.from_slurm_tasks()
        suspend = ckpt.SuspendOnSignal(getattr(signal, f"SIG{submitit.JobEnvironment.USR_SIG}"))
        suspend.requested = bool(os.environ.pop(EARLY_SIGNAL, ""))  # came while the job was starting
        log = JobLog()
        try:
            summary, _ = execute(self.config, trial_dir=self.trial_dir, resumable=True, suspend=suspend,
                                 on_event=log)
        except TrialSuspended as stop:
            if env.global_rank == 0:
                log.say(f"suspended at step {stop.event.step} "
                        f"({stop.event.submission_time_s:.2f} s of submission time); "
                        + (f"checkpoint {stop.event.checkpoint}" if stop.event.checkpoint
                           else f"no checkpoint ({stop.event.error}): the trial will start over"))
                suspend.forward()  # submitit: requeue the job (or fail: out of requeues) and exit
            raise SystemExit(0) from None  # other ranks: no result file, the job goes on requeued
        finally:
            suspend.close()
        return summary


class JobLog:
    """Runner events as plain lines in the job's log (rich progress bars do not suit a file)."""

    def say(self, line: str) -> None:
        print(f"[algobench] {line}", flush=True)

    def __call__(self, event: Any) -> None:
        from algobench.runner import Ended, Evaluated, Started

        if isinstance(event, Started):
            cfg = event.config
            self.say(f"{cfg.workload} ({cfg.size}) with {event.submission.name}, seed {cfg.seed}, "
                     f"batch {event.batch_size}, {event.backend['device']}")
            if event.checkpoint_discarded:
                self.say(f"checkpoint not used: {event.checkpoint_discarded}; the trial starts over")
            if event.resume:
                self.say(f"resumed from step {event.resume.step} at {event.resume.submission_time_s:.2f} s "
                         f"of submission time (requeue {event.resume.requeues})")
        elif isinstance(event, Evaluated):
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in event.metrics.items())
            self.say(f"eval at step {event.step}, {event.submission_time_s:.2f} s: {metrics}")
        elif isinstance(event, Ended):
            self.say(f"ended: {event.status} ({event.reason}) after {event.steps} steps")


def _use_allocated_cpus() -> None:
    """As many torch threads as CPUs SLURM gave the task, so array tasks do not fight over cores."""
    import torch

    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and cpus.isdigit():
        torch.set_num_threads(int(cpus))


# --- submitting ------------------------------------------------------------------------------------

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
    import workloads  # noqa: F401  (registers the workloads)
    from algobench.runner import ensure_data

    if executor not in ("slurm", "debug"):
        raise unknown("executor for submitting", executor, ["slurm", "debug"])
    if not configs:
        return []
    profile = profile or ClusterProfile()
    configs = [_absolute(c) for c in configs]
    for config in configs:
        ensure_data(config)
    results_dir = configs[0].results_dir
    ex = _executor(executor, job_records.jobs_dir(results_dir) / "%j", profile, parallelism)
    folders = [_reserve_trial_dir(c) for c in configs]
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # submitit prints sbatch's complaint too
            jobs = ex.submit_array([TrialJob(c, d) for c, d in zip(configs, folders)])
    except BaseException as err:  # leave no empty trial folder behind
        for folder in folders:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
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
    python = f"{shlex.quote(sys.executable)} -m algobench.slurm_entry"  # catches USR2 from the start
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
    from algobench.results import trial_dir_for

    name = submission_lib.resolve(config.submission)[0]
    folder = trial_dir_for(config.results_dir, config.workload, config.size, name, config.seed,
                           config.study, config.trial, framework=config.framework)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait(submitted: Sequence[Submitted], *, on_state: Callable[[str], None] = lambda state: None,
         poll_s: float = 2.0) -> list[dict | None]:
    """Block until every job ends; returns each trial's summary (None: the job did not finish it)."""
    import time

    pending = list(submitted)
    while pending:
        pending = [s for s in pending if not s.job.done()]
        if pending:
            on_state(", ".join(sorted({s.job.state for s in pending})))
            time.sleep(poll_s)
    return [_summary_of(s) for s in submitted]


def _summary_of(s: Submitted) -> dict | None:
    try:
        return json.loads((s.trial_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None


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
        import time

        from algobench.study import TrialUpdate

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
                    if name not in started and (sub.trial_dir / "metadata.json").exists():
                        started.add(name)
                        on_update(TrialUpdate(name, "started", step=0, time_s=0.0))
                    if sub.job.done():
                        del pending[name]
                        on_update(_ended_update(name, sub, TrialUpdate))
                if pending:
                    time.sleep(self.poll_s)
        except BaseException:  # Ctrl-C: as with local workers, the trials stop, unfinished
            for sub in pending.values():
                sub.job.cancel(check=False)
            raise


def _ended_update(name: str, sub: Submitted, update: type) -> Any:
    summary = _summary_of(sub)
    if summary is None:
        return update(name, "crashed", detail=f"job {sub.job.job_id} ended without finishing the trial; "
                                              f"see {sub.stderr}")
    return update(name, "ended", step=summary["steps"], time_s=summary["submission_time_s"],
                  status=summary["status"], time_to_target_s=summary["time_to_target_s"], detail=summary["reason"])


def array_executor(executor: str, *, cluster: str, overrides: Sequence[str] = (),
                   parallelism: int | None = None) -> ArrayExecutor:
    """What `tune --executor slurm|debug --cluster NAME --slurm K=V --jobs N` runs its study on."""
    if executor not in ("slurm", "debug"):
        raise unknown("executor for a job array", executor, ["slurm", "debug"])
    return ArrayExecutor(executor=executor, profile=load_profile(cluster, overrides), cluster=cluster,
                         parallelism=parallelism)
