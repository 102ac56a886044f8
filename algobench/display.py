"""Rich progress for a running trial and the panel with its outcome."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from algobench.events import Ended, Evaluated, Event, Started, TrainLog

STYLE = {"reached": "green", "not_reached": "yellow", "failed": "red"}
TRACEBACK_LINES = 6


class TrialDisplay:
    """Consumes runner events. In a terminal: two live lines, the bar of submission time against the
    budget, then step, loss, last eval and target (80 columns keep all of it). Elsewhere (a pipe, a
    SLURM log): one plain line per log interval and one per eval, never cut."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.live: Live | None = None
        self.started = False
        self.budget_s = 0.0
        self.target = ""
        self.metric = ""
        self.step, self.elapsed_s, self.loss = 0, 0.0, "-"
        self.last_eval = "-"
        self.wall_start = 0.0

    def __call__(self, event: Event) -> None:
        if isinstance(event, Started):
            self._start(event)
        elif isinstance(event, TrainLog):
            self.step, self.elapsed_s, self.loss = event.step, event.submission_time_s, f"{event.loss:.4f}"
            self._show(f"step {event.step}  {self._clock()}  loss {self.loss}")
        elif isinstance(event, Evaluated):
            value = event.metrics.get(self.metric, float("nan"))
            self.step, self.elapsed_s = event.step, event.submission_time_s
            self.last_eval = f"{self.metric} {value:.4f} @ step {event.step}"
            self._show(f"eval @ step {event.step}  {self._clock()}  {self.metric} {value:.4f} "
                       f"(target {self.target}, eval {event.eval_time_s:.1f} s so far)")
        elif isinstance(event, Ended):
            self.close()

    def _start(self, ev: Started) -> None:
        cfg, preset = ev.config, ev.preset
        self.metric, self.target, self.budget_s = preset.target.metric, str(preset.target), preset.budget_s
        self.wall_start = time.monotonic()
        self.console.print(
            f"[bold]{cfg.workload}[/] ({cfg.size}) with [bold]{ev.submission.name}[/] ({ev.submission.form} form), "
            f"seed {cfg.seed}: {ev.n_params / 1e6:.2f}M params, batch {ev.batch_size}, "
            f"{ev.backend['device']} {ev.backend['precision']}{' compiled' if ev.backend['compile'] else ''}; "
            f"target {self.target}, budget {preset.budget_s:g} s", soft_wrap=not self.console.is_terminal)
        self.started = True
        if self.console.is_terminal:
            self.live = Live(console=self.console, get_renderable=self._render, refresh_per_second=4, transient=False)
            self.live.start()

    def _clock(self) -> str:
        return f"{self.elapsed_s:.1f}/{self.budget_s:g} s"

    def _show(self, line: str) -> None:
        if self.live is not None:
            self.live.refresh()
        elif self.started:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def _render(self) -> Group:
        wall = time.monotonic() - self.wall_start
        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=self.budget_s or 1.0, completed=min(self.elapsed_s, self.budget_s or 1.0),
                                width=max(10, min(50, self.console.width - 42))),
                    f"{self._clock()} submission time", f"{wall:.0f} s wall")
        status = Text(f"step {self.step}  loss {self.loss}  eval {self.last_eval}  target {self.target}",
                      overflow="fold")
        return Group(bar, status)

    def close(self, exit_code: int = 0) -> None:
        if self.live is not None:
            self.live.refresh()
            self.live.stop()
            self.live = None


def outcome_panel(summary: dict, trial_dir: Path) -> Panel:
    status = summary["status"]
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # long result paths fold onto the next line, never cut
    table.add_row("outcome", f"[{STYLE[status]}]{status}[/] ({summary['reason']})")
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in summary["final_metrics"].items() if v is not None)
    table.add_row("last eval", metrics or "-")
    table.add_row("submission time", f"{summary['submission_time_s']:.2f} s over {summary['steps']} steps "
                                     f"(+{summary['eval_time_s']:.2f} s eval, off the clock)")
    table.add_row("results", str(trial_dir))
    if status == "reached":
        ttt = f"{summary['time_to_target_s']:.2f} s ({summary['steps_to_target']} steps)"
        if summary.get("refined_time_to_target_s") is not None:
            table.add_row("refined crossing", f"{summary['refined_time_to_target_s']:.2f} s "
                                              f"({summary['refined_steps_to_target']} steps)")
    else:
        ttt = "inf (target not reached)"
    table.add_row("time-to-target", f"[bold]{ttt}[/]")
    parts = [table]
    if summary.get("traceback"):  # its end, where the error is; the whole of it is in summary.json
        lines = summary["traceback"].rstrip().splitlines()
        shown = "\n".join(lines[-TRACEBACK_LINES:])
        parts.append(Text(shown, style="dim"))
        if len(lines) > TRACEBACK_LINES:
            parts.append(Text(f"(last {TRACEBACK_LINES} of {len(lines)} traceback lines; all in "
                              f"{trial_dir / 'summary.json'})", style="dim", overflow="fold"))
    contention = summary.get("contention") or {}
    if contention.get("contended"):
        parts.append(contention_warning(contention))
    return Panel(Group(*parts), title=f"{summary['workload']} / {summary['submission']}",
                 border_style=STYLE[status], expand=False)


def contention_warning(contention: dict) -> str:
    """One line: the machine was busy with other work, so this trial's times are not comparable."""
    why = (f"{contention['other_gpu_processes']} other process(es) used the GPU" if contention.get("other_gpu_processes")
           else f"the run queue averaged {contention.get('run_queue_mean')} threads on {contention['cpu_count']} cores")
    return (f"[yellow]warning: the machine was contended during this trial ({why}); its times are not "
            f"comparable and scoring will not rank it without --allow-contended[/]")
