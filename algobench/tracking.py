"""Weights & Biases logging of a trial: a consumer of the runner's events, like TrialDisplay.

Logged: the config at Started (hyperparameters, workload preset, seed, versions, hardware), the
training loss of each TrainLog (the runner syncs it only every `log_every_steps` steps), every
eval's metrics with the step and the submission time, and the outcome as the run's summary.
With no API key, or WANDB_MODE=offline, the run is written offline inside the trial folder
(`<trial>/wandb/offline-run-*`) to be uploaded later with `wandb sync`. Any W&B failure is a
warning: the trial goes on and its local results are complete. The API key is never logged.
"""

from __future__ import annotations

import json
import netrc
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from algobench import fingerprint
from algobench.errors import UserError
from algobench.events import Ended, Evaluated, Event, Started, TrainLog
from algobench.specs import Frozen, TrialConfig

DEFAULT_PROJECT = "algobench"
DEFAULT_INIT_TIMEOUT_S = 30.0  # wandb's own default (90 s) is long to wait for a dead network
TAG_MAX_CHARS = 64  # W&B rejects longer tags
Notify = Callable[[str], None]


class WandbSettings(Frozen):
    """Where and how trials are logged. `group`, when set, prefixes the study's group name."""

    project: str = DEFAULT_PROJECT
    entity: str | None = None
    mode: Literal["auto", "online", "offline"] = "auto"  # auto: online when an API key is found
    group: str | None = None
    job_type: str = "run"


def settings_from_env(*, project: str | None = None, entity: str | None = None) -> WandbSettings:
    """Settings from the command line, else WANDB_PROJECT / WANDB_ENTITY; wandb must be installed."""
    import importlib.util

    if importlib.util.find_spec("wandb") is None:
        raise UserError("--wandb needs the wandb package: pip install 'algobench[tracking]' (or pip install wandb)")
    return WandbSettings(project=project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
                         entity=entity or os.environ.get("WANDB_ENTITY") or None)


def has_api_key() -> bool:
    """WANDB_API_KEY, or a netrc entry for the W&B host (what `wandb login` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(settings: WandbSettings) -> Literal["online", "offline"]:
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if settings.mode == "offline" or env in ("offline", "dryrun"):
        return "offline"
    if settings.mode == "online" or env == "online":
        return "online"
    return "online" if has_api_key() else "offline"


def group_for(config: TrialConfig, submission: str, settings: WandbSettings) -> str | None:
    """One group per study: `<prefix>-study<k>`; a plain run (no study) has the prefix or none."""
    if config.study is None:
        return settings.group
    prefix = settings.group or f"{config.workload}-{config.size}-{submission}-{config.ruleset}"
    return f"{prefix}-study{config.study}"


def tags_for(ev: Started) -> list[str]:
    cfg = ev.config
    hw = fingerprint.hardware_key(fingerprint.hardware())
    tags = [f"workload:{cfg.workload}", f"size:{cfg.size}", f"submission:{ev.submission.name}",
            f"ruleset:{cfg.ruleset}", f"framework:{cfg.framework}", f"hardware:{hw}"]
    if cfg.study is not None:
        tags += [f"study:{cfg.study}", f"trial:{cfg.trial}"]
    return [t[:TAG_MAX_CHARS] for t in tags]


def config_for(ev: Started) -> dict[str, Any]:
    """The run's config: what ran and with what (no paths to data, no secrets)."""
    cfg = ev.config
    return {
        "workload": cfg.workload, "size": cfg.size, "submission": ev.submission.name, "framework": cfg.framework,
        "submission_form": ev.submission.form, "submission_sha256": ev.submission.sha256,
        "ruleset": cfg.ruleset, "study": cfg.study, "trial": cfg.trial, "seed": cfg.seed,
        "hparams": ev.hparams, "preset": json.loads(ev.preset.model_dump_json()),
        "options": json.loads(cfg.options.model_dump_json()), "batch_size": ev.batch_size,
        "n_params": ev.n_params, "backend": ev.backend, "versions": fingerprint.versions(),
        "hardware": fingerprint.hardware(),
    }


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _scrub(text: str) -> str:
    key = os.environ.get("WANDB_API_KEY")
    return text.replace(key, "***") if key else text


class WandbTracker:
    """Consumes a trial's events (algobench.trial.execute) and logs them to one W&B run, written
    under the trial folder `open` is given."""

    def __init__(self, settings: WandbSettings, *, trial_dir: Path | None = None, notify: Notify = _stderr,
                 announce_offline: bool = True) -> None:
        self.settings = settings
        self.announce_offline = announce_offline  # say how to `wandb sync` the offline run
        self.trial_dir = trial_dir
        self.notify = notify
        self.mode = resolve_mode(settings)
        self.run = None
        self._offline_dir: Path | None = None
        self.run_dir: Path | None = None  # the offline run folder, once the run has finished
        self.failed = False

    def open(self, trial_dir: Path) -> None:
        self.trial_dir = Path(trial_dir)

    def __call__(self, event: Event) -> None:
        if self.failed:
            return
        if isinstance(event, Started):
            self._guard("init", self._start, event)
        elif self.run is None:
            return
        elif isinstance(event, TrainLog):
            self._guard("log", self.run.log, {"step": event.step, "submission_time_s": event.submission_time_s,
                                              "train/loss": event.loss})
        elif isinstance(event, Evaluated):
            self._guard("log", self.run.log, {
                "step": event.step, "submission_time_s": event.submission_time_s,
                "eval_time_s": event.eval_time_s, **{f"eval/{k}": v for k, v in event.metrics.items()}})
        elif isinstance(event, Ended):
            self._guard("summary", self.run.summary.update, {
                "status": event.status, "reason": event.reason, "time_to_target_s": event.time_to_target_s,
                "steps_to_target": event.steps_to_target, "steps": event.steps,
                "submission_time_s": event.submission_time_s, "eval_time_s": event.eval_time_s,
                "wall_time_s": event.wall_time_s, "refined_time_to_target_s": event.extra.get("refined_time_to_target_s"),
                "contended": event.extra.get("contention", {}).get("contended"),
                **{f"final/{k}": v for k, v in event.final_metrics.items()}})
            self.close(exit_code=1 if event.status == "failed" else 0)

    def _start(self, ev: Started) -> None:
        import wandb

        self.trial_dir.mkdir(parents=True, exist_ok=True)
        timeout = float(os.environ.get("WANDB_INIT_TIMEOUT", DEFAULT_INIT_TIMEOUT_S))
        self.run = wandb.init(
            project=self.settings.project, entity=self.settings.entity,
            group=group_for(ev.config, ev.submission.name, self.settings), job_type=self.settings.job_type,
            name=self.trial_dir.name, tags=tags_for(ev), config=config_for(ev), dir=str(self.trial_dir), mode=self.mode,
            # console off: wandb must not wrap stdout (the rich display owns it); silent: our own notices
            settings=wandb.Settings(console="off", silent=True, init_timeout=timeout))
        self.run.define_metric("step")
        self.run.define_metric("submission_time_s")
        self.run.define_metric("train/*", step_metric="step")
        self.run.define_metric("eval/*", step_metric="step")
        self._offline_dir = Path(self.run.settings.sync_dir) if self.mode == "offline" else None

    def close(self, *, exit_code: int = 0) -> None:
        """Finish the run (exit_code 1: failed trial, 130: interrupted). Safe to call twice."""
        run, self.run = self.run, None
        if run is None:
            return
        self._guard("finish", run.finish, exit_code=exit_code)
        if self._offline_dir is not None and not self.failed:
            self.run_dir = self._offline_dir
            if self.announce_offline:
                self.notify(f"W&B: logged offline to {self.run_dir}; upload it later with: wandb sync {self.run_dir}")

    def _guard(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as err:  # any W&B failure: a warning, never the end of the trial
            self.failed = True
            run, self.run = self.run, None
            if run is not None and what != "finish":
                try:  # release wandb's resources; what it wrote so far stays on disk
                    run.finish(exit_code=1)
                except Exception:
                    pass
            message = " ".join(str(err).split())[:300]
            self.notify(_scrub(f"warning: W&B {what} failed ({type(err).__name__}: {message}); the trial "
                               f"goes on without W&B and its local results are complete"))
