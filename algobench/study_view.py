"""A rich live view of a study, and the tables of its trials.

`StudyView` consumes TrialUpdates (from any executor): trials done/running/failed, the best
time-to-target so far, and one row per running trial; a line is printed as each trial ends.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from algobench.study import TrialUpdate

STYLE = {"reached": "green", "not_reached": "yellow", "failed": "red", "crashed": "red", "unfinished": "magenta",
         "running": "cyan", "queued": "dim", "finished earlier": "dim"}


@dataclass
class _Trial:
    name: str
    hparams: Mapping[str, Any]
    state: str = "queued"
    step: int = 0
    time_s: float = 0.0
    budget_s: float | None = None
    loss: float | None = None
    metric: float | None = None
    time_to_target_s: float | None = None


def format_hparams(hparams: Mapping[str, Any], keys: Iterable[str] | None = None) -> str:
    keys = list(hparams) if keys is None else [k for k in keys if k in hparams]
    return " ".join(f"{k}={_short(hparams[k])}" for k in keys)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _seconds(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.1f} s"


class StudyView:
    """Live view of a study. Call it with each TrialUpdate; use as a context manager."""

    def __init__(self, console: Console, *, title: str, hparams: Mapping[str, Mapping[str, Any]],
                 finished: Sequence[str] = (), tuned: Sequence[str] = ()) -> None:
        self.console, self.title, self.tuned = console, title, list(tuned)
        self.trials = {name: _Trial(name, hp) for name, hp in hparams.items()}  # fixed keys: safe to render
        for name in finished:
            self.trials[name].state = "finished earlier"
        self.lock = threading.Lock()
        self.live = Live(console=console, get_renderable=self.render, refresh_per_second=4, transient=True)

    def __enter__(self) -> StudyView:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()

    def __call__(self, update: TrialUpdate) -> None:
        trial = self.trials.get(update.name)
        if trial is None:
            return
        with self.lock:
            if update.kind == "started":
                trial.state, trial.budget_s = "running", update.budget_s
            elif update.kind in ("train", "eval"):
                trial.step, trial.time_s = update.step or 0, update.time_s or 0.0
                if update.kind == "train":
                    trial.loss = update.value
                else:
                    trial.metric = update.value
            elif update.kind == "ended":
                trial.state, trial.step, trial.time_s = update.status or "failed", update.step or 0, update.time_s or 0
                trial.time_to_target_s = update.time_to_target_s
        if update.kind == "ended":
            how = f"time-to-target {_seconds(update.time_to_target_s)}" if update.status == "reached" else update.detail
            self._print((f"{trial.name} {trial.state}", STYLE.get(trial.state, "")),
                        f" ({how}) {format_hparams(trial.hparams, self.tuned)}")
        elif update.kind == "crashed":
            trial.state = "crashed"
            self._print((f"{trial.name} did not finish", "red"), f" ({update.detail})")
        elif update.kind == "notice":
            self._print((f"{trial.name}:", "dim"), f" {update.detail}")

    def _print(self, *parts: str | tuple[str, str]) -> None:
        self.console.print(Text.assemble(*parts), highlight=False)

    def counts(self) -> dict[str, int]:
        states = [t.state for t in self.trials.values()]
        return {state: states.count(state) for state in set(states)}

    def best(self) -> _Trial | None:
        reached = [t for t in self.trials.values() if t.state == "reached" and t.time_to_target_s is not None]
        return min(reached, key=lambda t: t.time_to_target_s, default=None)

    def headline(self) -> str:
        c = self.counts()
        done = sum(c.get(s, 0) for s in ("reached", "not_reached", "failed"))
        best = self.best()
        best_text = f"{best.time_to_target_s:.1f} s ({best.name})" if best else "-"
        earlier = f", {c['finished earlier']} finished earlier" if c.get("finished earlier") else ""
        return (f"{self.title}: {done}/{len(self.trials) - c.get('finished earlier', 0)} done "
                f"({c.get('reached', 0)} reached, {c.get('failed', 0) + c.get('crashed', 0)} failed{earlier}), "
                f"{c.get('running', 0)} running; best time-to-target {best_text}")

    def render(self) -> Group:
        with self.lock:
            table = Table(box=None, padding=(0, 1), show_edge=False)
            for col in ("trial", "state", "step", "time / budget", "loss", "eval", "hyperparameters"):
                table.add_column(col)
            for t in self.trials.values():
                if t.state != "running":
                    continue
                budget = f"{t.time_s:.1f} / {t.budget_s:g} s" if t.budget_s else f"{t.time_s:.1f} s"
                table.add_row(t.name, f"[cyan]{t.state}[/]", str(t.step), budget,
                              "-" if t.loss is None else f"{t.loss:.4f}",
                              "-" if t.metric is None else f"{t.metric:.4f}", format_hparams(t.hparams, self.tuned))
            return Group(Text(self.headline(), style="bold"), table) if table.row_count else Text(
                self.headline(), style="bold")


def varying_keys(hparams: Sequence[Mapping[str, Any]]) -> list[str]:
    """The hyperparameters whose values differ between trials, in first-seen order."""
    keys = list(dict.fromkeys(k for hp in hparams for k in hp))
    return [k for k in keys if len({repr(hp.get(k)) for hp in hparams}) > 1]


def runs_table(rows: Sequence[Mapping[str, Any]], *, title: str = "trials") -> Table:
    """One row per trial: which, status, time-to-target, steps, and the hyperparameters that vary."""
    keys = varying_keys([r.get("hparams") or {} for r in rows])
    groups = {f"{r['workload']}/{r['size']}/{r['submission']}" for r in rows}
    shared = groups.pop() if len(groups) == 1 else None
    table = Table(title=f"{title}: {shared}" if shared else title, box=box.SIMPLE_HEAD)
    for col in ("trial", "status", "to target", "steps"):
        table.add_column(col, overflow="fold")  # narrow terminals fold cells, never cut them
    table.add_column("hyperparameters" + (" (those that vary)" if len(rows) > 1 else ""), ratio=1, overflow="fold")
    why = any(r.get("reason") and r["status"] in ("failed", "unreadable") for r in rows)
    if why:
        table.add_column("why it failed", ratio=1, overflow="fold")
    for r in rows:
        which = f"study{r['study']}-trial{r['trial']}" if r.get("study") is not None else Path(r["path"]).name
        if not shared:
            which = f"{r['workload']}/{r['size']}/{r['submission']} {which}"
        cells = [which, Text(r["status"], style=STYLE.get(r["status"], "")),
                 _seconds(r.get("time_to_target_s")), "-" if r.get("steps") is None else str(r["steps"]),
                 format_hparams(r.get("hparams") or {}, keys if len(rows) > 1 else None)]
        if why:
            cells.append(r.get("reason") or "" if r["status"] in ("failed", "unreadable") else "")
        table.add_row(*cells)
    return table
