"""Writing a trial's results: one folder per trial, every file written atomically.

The layout and the schema are documented in results/README.md.
"""

from __future__ import annotations

import io
import json
import os
import socket
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

import algobench
from algobench import fingerprint
from algobench.runner import Ended, Evaluated, Event, Started, TrainLog

SCHEMA_VERSION = 1
STATUSES = ("reached", "not_reached", "failed")
SUMMARY_FIELDS = (
    "schema_version", "trial_id", "workload", "size", "submission", "framework", "ruleset", "study", "trial",
    "seed", "status", "reason", "traceback", "target", "time_to_target_s", "steps_to_target", "budget_s",
    "steps", "submission_time_s", "eval_time_s", "wall_time_s", "final_metrics", "hardware", "hardware_key",
    "hparams", "requeues", "compile_time_s",
)


def atomic_write(path: Path, data: bytes) -> None:
    """Make `path` hold `data`, all or nothing, even under `kill -9`.

    Linux: the bytes go into an unnamed O_TMPFILE in the target folder, are fsynced, and only
    then get a (hidden) name and are renamed over `path`: a killed writer leaves no partial file
    under any name. Elsewhere: a named temporary file, fsync, rename.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        try:
            _write_unnamed(path.parent, data, tmp)
        except OSError:  # no O_TMPFILE or /proc here: a named temporary file
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_unnamed(folder: Path, data: bytes, name: Path) -> None:
    fd = os.open(folder, getattr(os, "O_TMPFILE", 0) | os.O_WRONLY, 0o644)
    try:
        _write_all(fd, data)
        _link_unnamed(fd, name)
    finally:
        os.close(fd)


def _link_unnamed(fd: int, name: Path) -> None:
    """linkat(AT_SYMLINK_FOLLOW) of /proc/self/fd/N: gives the O_TMPFILE file a name."""
    proc = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.link(str(fd), name, src_dir_fd=proc, follow_symlinks=True)
    finally:
        os.close(proc)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, (json.dumps(data, indent=2, default=str, allow_nan=False) + "\n").encode())


def write_parquet(path: Path, df: pd.DataFrame) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write(path, buf.getvalue())


def validate_summary(summary: dict) -> None:
    missing = [k for k in SUMMARY_FIELDS if k not in summary]
    if missing:
        raise ValueError(f"summary is missing {missing}")
    if summary["status"] not in STATUSES:
        raise ValueError(f"summary status {summary['status']!r} is not one of {STATUSES}")
    if (summary["status"] == "reached") != (summary["time_to_target_s"] is not None):
        raise ValueError("time_to_target_s is set exactly when the status is 'reached'")


def trial_dir_for(results_dir: Path, workload: str, size: str, submission: str, seed: int,
                  study: int | None, trial: int | None, framework: str = "torch") -> Path:
    name = (f"study{study}-trial{trial}" if study is not None
            else f"run-{datetime.now().strftime('%Y%m%d-%H%M%S')}-seed{seed}")
    if framework != "torch":  # the same submission's trials in another framework, side by side
        name = f"{framework}-{name}"
    path = results_dir / workload / size / submission / name
    n = 1
    while path.exists() and study is None:  # two plain runs in the same second
        n += 1
        path = path.with_name(f"{name}-{n}")
    return path


class TrialRecorder:
    """Turns the runner's events into the trial's files."""

    def __init__(self, trial_dir: Path) -> None:
        self.dir = trial_dir
        self.trial_id = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self.evals: list[dict] = []
        self.train: list[dict] = []
        self.started: Started | None = None
        self.summary: dict | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, Started):
            self.started = event
            self._continue_or_start_over(event)
            write_json(self.dir / "metadata.json", self._metadata(event))
        elif isinstance(event, TrainLog):
            self.train.append({"step": event.step, "submission_time_s": event.submission_time_s,
                               "train_loss": event.loss})
        elif isinstance(event, Evaluated):
            self.evals.append(event.row())
            self._write_histories()
        elif isinstance(event, Ended):
            self._write_histories()
            self.summary = self._summary(event)
            validate_summary(self.summary)
            write_json(self.dir / "summary.json", self.summary)

    def _continue_or_start_over(self, ev: Started) -> None:
        """A trial resumed from its checkpoint keeps its id and histories; one whose checkpoint
        was unusable starts over without the previous attempt's histories."""
        if ev.resume is not None:
            try:
                self.trial_id = json.loads((self.dir / "metadata.json").read_text())["trial_id"]
            except (OSError, ValueError, KeyError, TypeError):
                pass
            self.evals, self.train = list(ev.resume.evals), list(ev.resume.train)
        elif ev.checkpoint_discarded is not None:
            for name in ("evals.parquet", "train.parquet"):
                (self.dir / name).unlink(missing_ok=True)

    def _write_histories(self) -> None:
        if self.evals:
            write_parquet(self.dir / "evals.parquet", pd.DataFrame(self.evals))
        if self.train:
            write_parquet(self.dir / "train.parquet", pd.DataFrame(self.train))

    def _metadata(self, ev: Started) -> dict:
        cfg = ev.config
        hw = fingerprint.hardware()
        return {
            "schema_version": SCHEMA_VERSION,
            "trial_id": self.trial_id,
            "config": json.loads(cfg.model_dump_json()),
            "preset": json.loads(ev.preset.model_dump_json()),
            "framework": cfg.framework,
            "submission": {"name": ev.submission.name, "path": str(ev.submission.path),
                           "form": ev.submission.form, "sha256": ev.submission.sha256},
            "hparams": ev.hparams,
            "seed": cfg.seed,
            "batch_size": ev.batch_size,
            "n_params": ev.n_params,
            "backend": ev.backend,
            "versions": fingerprint.versions(),
            "git_commit": fingerprint.git_commit(Path(algobench.__file__).parent),
            "hardware": hw,
            "hardware_key": fingerprint.hardware_key(hw),
            "host": socket.gethostname(),
            "started_at": datetime.now(timezone.utc).isoformat(),
            "requeues": ev.resume.requeues if ev.resume else 0,
            "checkpoint_discarded": ev.checkpoint_discarded,
        }

    def _summary(self, ev: Ended) -> dict:
        assert self.started is not None, "Ended before Started"
        cfg, preset = self.started.config, self.started.preset
        hw = fingerprint.hardware()
        return {
            "schema_version": SCHEMA_VERSION,
            "trial_id": self.trial_id,
            "workload": cfg.workload,
            "size": cfg.size,
            "submission": self.started.submission.name,
            "framework": cfg.framework,
            "ruleset": cfg.ruleset,
            "study": cfg.study,
            "trial": cfg.trial,
            "seed": cfg.seed,
            "status": ev.status,
            "reason": ev.reason,
            "traceback": ev.traceback,
            "target": preset.target.model_dump(),
            "time_to_target_s": ev.time_to_target_s,
            "steps_to_target": ev.steps_to_target,
            "budget_s": preset.budget_s,
            "steps": ev.steps,
            "submission_time_s": ev.submission_time_s,
            "eval_time_s": ev.eval_time_s,
            "wall_time_s": ev.wall_time_s,
            "final_metrics": {k: (v if v == v and abs(v) != float("inf") else None)
                              for k, v in ev.final_metrics.items()},
            "hardware": hw,
            "hardware_key": fingerprint.hardware_key(hw),
            "hparams": self.started.hparams,
            "requeues": ev.requeues,
            "compile_time_s": ev.compile_time_s,
        }
