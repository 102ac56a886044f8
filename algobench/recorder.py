"""The recorder: turns a trial's events into its files (algobench/layout.py), every one written
atomically. It is the one consumer every trial has; results/README.md documents the files."""

from __future__ import annotations

import json
import socket
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

import algobench
from algobench import fingerprint
from algobench.events import Ended, Evaluated, Event, Started, TrainLog
from algobench.files import write_json, write_parquet
from algobench.layout import EVALS, METADATA, SCHEMA_VERSION, SUMMARY, TRAIN, validate_summary


class TrialRecorder:
    """Writes metadata.json at the start, the histories at every eval, summary.json at the end."""

    def __init__(self, trial_dir: Path) -> None:
        self.dir = Path(trial_dir)
        self.trial_id = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self.evals: list[dict] = []
        self.train: list[dict] = []
        self.started: Started | None = None
        self.summary: dict | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, Started):
            self.started = event
            self._continue_or_start_over(event)
            write_json(self.dir / METADATA, self._metadata(event))
        elif isinstance(event, TrainLog):
            self.train.append(event.row())
        elif isinstance(event, Evaluated):
            self.evals.append(event.row())
            self._write_histories()
        elif isinstance(event, Ended):
            self._write_histories()
            summary = self._summary(event)
            validate_summary(summary)
            write_json(self.dir / SUMMARY, summary)
            self.summary = summary

    def _continue_or_start_over(self, ev: Started) -> None:
        """A trial resumed from its checkpoint keeps its id and histories; one whose checkpoint
        was unusable starts over without the previous attempt's histories."""
        if ev.resume is not None:
            try:
                self.trial_id = json.loads((self.dir / METADATA).read_text())["trial_id"]
            except (OSError, ValueError, KeyError, TypeError):
                pass
            self.evals, self.train = list(ev.resume.evals), list(ev.resume.train)
        elif ev.checkpoint_discarded is not None:
            for name in (EVALS, TRAIN):
                (self.dir / name).unlink(missing_ok=True)

    def _write_histories(self) -> None:
        if self.evals:
            write_parquet(self.dir / EVALS, pd.DataFrame(self.evals))
        if self.train:
            write_parquet(self.dir / TRAIN, pd.DataFrame(self.train))

    def _metadata(self, ev: Started) -> dict[str, Any]:
        cfg = ev.config
        hw = fingerprint.hardware()
        return {
            "schema_version": SCHEMA_VERSION,
            "trial_id": self.trial_id,
            "config": json.loads(cfg.model_dump_json()),
            "preset": json.loads(ev.preset.model_dump_json()),
            "overrides": ev.overrides,
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

    def _summary(self, ev: Ended) -> dict[str, Any]:
        if self.started is None:
            raise RuntimeError("the trial ended before it started")
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
            "overrides": self.started.overrides,
            **ev.extra,  # the refined crossing and the contention readings
        }
