"""Running the trials of a study: resume, executors, and progress updates.

`plan_study(configs)` looks at the results folder: a trial folder with summary.json is finished
(skipped), one without is unfinished (removed and redone). `run_study(plan, executor=...)` runs
the rest on an executor: `InProcessExecutor` (one trial after the other, in this process) or
`ProcessPoolExecutor(jobs)` (J worker processes at once). Any executor (a SLURM job array, say)
only has to run each config with `run_one`, which lands the trial exactly where a sequential run
puts it, and report `TrialUpdate`s; a trial that ends without summary.json is `crashed`.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from algobench import submission as submission_lib
from algobench import layout
from algobench.errors import UserError
from algobench.events import Ended, Evaluated, Event, Started, TrainLog
from algobench.layout import METADATA, SUMMARY
from algobench.specs import TrialConfig
from algobench.workload import ensure_data
from workloads import WORKLOADS

if TYPE_CHECKING:
    from algobench.tracking import WandbSettings  # (a worker enters the W&B module only to log to it)

WORKER_LOG = "worker.log"  # a worker process's stdout and stderr, in its trial folder
UpdateKind = Literal["started", "train", "eval", "ended", "crashed", "notice"]


@dataclass(frozen=True)
class TrialUpdate:
    """What a running trial reports; JSON-able, so that worker processes can send it."""

    name: str  # the trial folder's name, e.g. study1-trial3
    kind: UpdateKind
    step: int | None = None
    time_s: float | None = None  # submission time
    budget_s: float | None = None
    value: float | None = None  # train loss (train) or the target metric (eval)
    status: str | None = None  # reached | not_reached | failed (ended)
    time_to_target_s: float | None = None
    detail: str | None = None  # the reason a trial ended or crashed, or a notice


OnUpdate = Callable[[TrialUpdate], None]


class UpdateStream:
    """Runner events -> TrialUpdates for one trial."""

    def __init__(self, name: str, emit: OnUpdate) -> None:
        self.name, self.emit, self.metric = name, emit, ""

    def __call__(self, event: Event) -> None:
        if isinstance(event, Started):
            self.metric = event.preset.target.metric
            self.emit(TrialUpdate(self.name, "started", step=0, time_s=0.0, budget_s=event.preset.budget_s))
        elif isinstance(event, TrainLog):
            self.emit(TrialUpdate(self.name, "train", step=event.step, time_s=event.submission_time_s,
                                  value=event.loss))
        elif isinstance(event, Evaluated):
            self.emit(TrialUpdate(self.name, "eval", step=event.step, time_s=event.submission_time_s,
                                  value=event.metrics.get(self.metric)))
        elif isinstance(event, Ended):
            self.emit(TrialUpdate(self.name, "ended", step=event.steps, time_s=event.submission_time_s,
                                  status=event.status, time_to_target_s=event.time_to_target_s,
                                  detail=event.reason))


def trial_dir(config: TrialConfig) -> Path:
    """Where `config`'s trial lands: results/<workload>/<size>/<submission>/study<k>-trial<i>."""
    return layout.trial_dir(config, submission_lib.resolve(config.submission)[0])


# ---------------------------------------------------------------------------------------------
# Resume


@dataclass(frozen=True)
class Plan:
    configs: tuple[TrialConfig, ...]  # every trial of the study, in order
    todo: tuple[TrialConfig, ...]  # the ones to run
    finished: tuple[Path, ...]  # trial folders with summary.json: skipped
    unfinished: tuple[Path, ...]  # trial folders without it: removed and redone


def plan_study(configs: Sequence[TrialConfig]) -> Plan:
    """Which trials are done, which to redo; a finished trial run with another config is an error."""
    todo, finished, unfinished = [], [], []
    for config in configs:
        folder = trial_dir(config)
        if (folder / SUMMARY).is_file():
            _check_same(config, folder)
            finished.append(folder)
            continue
        if folder.exists():
            unfinished.append(folder)
        todo.append(config)
    return Plan(tuple(configs), tuple(todo), tuple(finished), tuple(unfinished))


def _check_same(config: TrialConfig, folder: Path) -> None:
    """The finished trial in `folder` ran `config` (paths aside): else resuming would mix studies."""
    try:
        recorded = json.loads((folder / METADATA).read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # nothing to compare against: the summary alone says "finished"
    planned = config.model_dump(mode="json")
    for key in ("results_dir", "data_dir"):
        recorded.pop(key, None), planned.pop(key, None)
    diff = _first_difference(planned, recorded)
    if diff:
        raise UserError(f"{folder} holds a finished trial with another config ({diff}); use another "
                        f"--results-dir or --seed, or remove that folder to rerun it")


def _first_difference(a: object, b: object, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    return None if a == b else f"{path}: {a!r} now, {b!r} then"


def prepare_data(configs: Sequence[TrialConfig]) -> None:
    """Prepare each workload's data once, before parallel workers would race to do it."""
    for workload, size, data_dir in sorted({(c.workload, c.size, c.data_dir) for c in configs}):
        ensure_data(WORKLOADS.get(workload), size, data_dir)


# ---------------------------------------------------------------------------------------------
# Executors


def run_one(config: TrialConfig, *, tracking: WandbSettings | None, on_update: OnUpdate) -> dict:
    """Run one trial of a study where it belongs, reporting updates; returns its summary."""
    from algobench.trial import execute  # (torch: imported when a trial runs, so `runs` starts fast)

    folder = trial_dir(config)

    def notify(message: str) -> None:
        on_update(TrialUpdate(folder.name, "notice", detail=message))

    consumers: list = [UpdateStream(folder.name, on_update)]
    if tracking is not None:
        from algobench.tracking import WandbTracker  # (only a --wandb study enters the W&B module)

        consumers.append(WandbTracker(tracking, notify=notify, announce_offline=False))
    summary, _ = execute(config, consumers, trial_dir=folder)
    return summary


class Executor(Protocol):
    def run(self, configs: Sequence[TrialConfig], *, tracking: WandbSettings | None,
            on_update: OnUpdate) -> None:
        """Run every config to its end (each with `run_one`), reporting progress."""


@dataclass(frozen=True)
class InProcessExecutor:
    """One trial after the other in this process."""

    def run(self, configs: Sequence[TrialConfig], *, tracking: WandbSettings | None,
            on_update: OnUpdate) -> None:
        for config in configs:
            try:
                run_one(config, tracking=tracking, on_update=on_update)
            except UserError:
                raise
            except Exception as err:  # a harness error in one trial: the others still run
                on_update(TrialUpdate(trial_dir(config).name, "crashed", detail=f"{type(err).__name__}: {err}"))


@dataclass
class _Worker:
    config: TrialConfig
    folder: Path
    proc: subprocess.Popen
    buffer: bytes = b""


@dataclass(frozen=True)
class ProcessPoolExecutor:
    """`jobs` trials at once, each in its own worker process with cores/jobs threads."""

    jobs: int

    def run(self, configs: Sequence[TrialConfig], *, tracking: WandbSettings | None,
            on_update: OnUpdate) -> None:
        queue = list(configs)
        running: dict[int, _Worker] = {}
        threads = max(1, _cpu_count() // self.jobs)
        with selectors.DefaultSelector() as selector:
            try:
                while queue or running:
                    while queue and len(running) < self.jobs:
                        worker = _start_worker(queue.pop(0), tracking, threads)
                        running[worker.proc.pid] = worker
                        selector.register(worker.proc.stdout, selectors.EVENT_READ, worker)
                    for key, _ in selector.select(timeout=1.0):
                        worker = key.data
                        chunk = os.read(worker.proc.stdout.fileno(), 1 << 16)
                        if chunk:
                            _relay(worker, chunk, on_update)
                            continue
                        selector.unregister(worker.proc.stdout)
                        running.pop(worker.proc.pid)
                        _reap(worker, on_update)
            except BaseException:  # Ctrl-C or an error here: stop the workers, leave them unfinished
                _stop([w.proc for w in running.values()])
                raise


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _start_worker(config: TrialConfig, tracking: WandbSettings | None, threads: int) -> _Worker:
    folder = trial_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, str(threads))  # J workers share the cores; a user's setting wins
    payload = {"config": config.model_dump(mode="json"),
               "tracking": tracking.model_dump(mode="json") if tracking else None}
    with open(folder / WORKER_LOG, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from algobench.study import worker_main; worker_main()", str(folder)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env)
    proc.stdin.write(json.dumps(payload).encode())
    proc.stdin.close()
    return _Worker(config, folder, proc)


def _relay(worker: _Worker, chunk: bytes, on_update: OnUpdate) -> None:
    *lines, worker.buffer = (worker.buffer + chunk).split(b"\n")
    for line in lines:
        try:
            on_update(TrialUpdate(**json.loads(line)))
        except (ValueError, TypeError):
            pass  # not an update: a stray line cannot break the study


def _reap(worker: _Worker, on_update: OnUpdate) -> None:
    code = worker.proc.wait()
    if (worker.folder / SUMMARY).is_file():
        return
    why = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    tail = _last_line(worker.folder / WORKER_LOG)
    on_update(TrialUpdate(worker.folder.name, "crashed", detail=f"{why}{': ' + tail if tail else ''}"))


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:300] if lines else ""


def _stop(procs: Sequence[subprocess.Popen], grace_s: float = 10.0) -> None:
    """SIGINT (the workers end their trial unfinished), then SIGKILL after `grace_s`."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def worker_main() -> None:
    """A worker process: the config on stdin, TrialUpdates as JSON lines on stdout."""
    from algobench.tracking import WandbSettings  # (a worker enters the W&B module only to log to it)

    payload = json.loads(sys.stdin.read())
    config = TrialConfig.model_validate(payload["config"])
    tracking = WandbSettings.model_validate(payload["tracking"]) if payload["tracking"] else None
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else printed goes to the trial's worker.log

    def emit(update: TrialUpdate) -> None:
        channel.write(json.dumps(asdict(update)) + "\n")
        if update.kind == "notice":
            print(update.detail, file=sys.stderr, flush=True)

    try:
        run_one(config, tracking=tracking, on_update=emit)
    except KeyboardInterrupt:
        sys.exit(130)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


# ---------------------------------------------------------------------------------------------
# A study


@dataclass(frozen=True)
class StudyOutcome:
    summaries: tuple[tuple[TrialConfig, Path, dict | None], ...]  # None: did not finish

    @property
    def unfinished(self) -> list[Path]:
        return [folder for _, folder, summary in self.summaries if summary is None]


def run_study(plan: Plan, *, executor: Executor, tracking: WandbSettings | None = None,
              on_update: OnUpdate = lambda update: None) -> StudyOutcome:
    """Remove the unfinished folders, run the trials still to do, and collect every summary."""
    prepare_data(plan.todo)
    for folder in plan.unfinished:
        shutil.rmtree(folder)
    executor.run(plan.todo, tracking=tracking, on_update=on_update)
    rows = []
    for config in plan.configs:
        folder = trial_dir(config)
        summary = layout.read_summary(folder) if (folder / SUMMARY).is_file() else None
        rows.append((config, folder, summary.model_dump(mode="json") if isinstance(summary, layout.Summary) else None))
    return StudyOutcome(tuple(rows))


def offline_wandb_runs(folders: Sequence[Path]) -> list[Path]:
    """The offline W&B run folders inside these trial folders."""
    return sorted(run for folder in folders for run in (folder / "wandb").glob("offline-run-*") if run.is_dir())


# ---------------------------------------------------------------------------------------------
# Listing trials (`algobench runs`)


def find_runs(roots: Sequence[Path]) -> list[dict]:
    """Every trial folder under `roots`: finished ones from summary.json, unfinished ones from
    metadata.json (status `unfinished`). Unreadable files are listed with status `unreadable`."""
    rows = []
    for root in roots:
        if not root.is_dir():
            raise UserError(f"results folder '{root}' does not exist")
        for dirpath, _dirs, files in os.walk(root):
            folder = Path(dirpath)
            if SUMMARY in files:
                rows.append(_run_row(folder, SUMMARY))
            elif METADATA in files:
                rows.append(_run_row(folder, METADATA))
    return sorted(rows, key=lambda r: (r["workload"], r["size"], r["submission"], r["study"] is None,
                                       r["study"] or 0, r["trial"] or 0, r["path"]))


def _run_row(folder: Path, name: str) -> dict:
    if name == SUMMARY:
        summary = layout.read_summary(folder)
        source = (summary.model_dump(mode="json") if isinstance(summary, layout.Summary)
                  else {"status": "unreadable", "reason": f"{name}: {summary}"})
    else:
        try:
            data = json.loads((folder / name).read_text())
            if not isinstance(data.get("config"), dict) or not isinstance(data.get("hparams") or {}, dict):
                raise TypeError("config and hparams must be mappings")
            source = {**data["config"], "submission": data["submission"]["name"], "hparams": data["hparams"],
                      "status": "unfinished"}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            source = {"status": "unreadable", "reason": f"{name}: {err}"}
    parts = folder.parts
    fallback = dict(zip(("workload", "size", "submission"), parts[-4:-1])) if len(parts) >= 4 else {}
    return {
        "workload": source.get("workload", fallback.get("workload", "?")),
        "size": source.get("size", fallback.get("size", "?")),
        "submission": source.get("submission", fallback.get("submission", "?")),
        "ruleset": source.get("ruleset"), "study": source.get("study"), "trial": source.get("trial"),
        "seed": source.get("seed"), "status": source["status"], "reason": source.get("reason"),
        "time_to_target_s": source.get("time_to_target_s"), "steps": source.get("steps"),
        "hparams": source.get("hparams") or {}, "path": str(folder),
    }
