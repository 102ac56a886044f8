"""Rich progress for a running trial and the panel with its outcome."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console, Group
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from algobench.events import Ended, Evaluated, Event, Started, TrainLog

STYLE = {"reached": "green", "not_reached": "yellow", "failed": "red"}


class TrialDisplay:
    """Consumes runner events: a progress bar of submission time against the budget."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.progress: Progress | None = None
        self.task = None
        self.target = ""
        self.last_eval = "-"

    def __call__(self, event: Event) -> None:
        if isinstance(event, Started):
            self._start(event)
        elif isinstance(event, TrainLog):
            self._update(step=event.step, elapsed=event.submission_time_s, loss=f"{event.loss:.4f}")
        elif isinstance(event, Evaluated):
            metric = self.metric
            self.last_eval = f"{metric} {event.metrics.get(metric, float('nan')):.4f} @ {event.step}"
            self._update(step=event.step, elapsed=event.submission_time_s)
        elif isinstance(event, Ended):
            self.close()

    def _start(self, ev: Started) -> None:
        cfg, preset = ev.config, ev.preset
        self.metric = preset.target.metric
        self.target = str(preset.target)
        self.console.print(
            f"[bold]{cfg.workload}[/] ({cfg.size}) with [bold]{ev.submission.name}[/] ({ev.submission.form} form), "
            f"seed {cfg.seed}: {ev.n_params / 1e6:.2f}M params, batch {ev.batch_size}, "
            f"{ev.backend['device']} {ev.backend['precision']}{' compiled' if ev.backend['compile'] else ''}; "
            f"target {self.target}, budget {preset.budget_s:g} s")
        self.progress = Progress(
            TextColumn("[progress.description]{task.description}"), BarColumn(),
            TextColumn("{task.completed:>6.1f}/{task.total:g} s"),
            TextColumn("step {task.fields[step]}  loss {task.fields[loss]}  eval {task.fields[last_eval]}"),
            TimeElapsedColumn(), console=self.console, transient=False)
        self.task = self.progress.add_task(f"target {self.target}", total=preset.budget_s, step=0, loss="-",
                                           last_eval="-")
        self.progress.start()

    def _update(self, *, step: int, elapsed: float, **fields) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=elapsed, step=step, last_eval=self.last_eval, **fields)

    def close(self, exit_code: int = 0) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def outcome_panel(summary: dict, trial_dir: Path) -> Panel:
    status = summary["status"]
    table = Table.grid(padding=(0, 2))
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
    if summary.get("traceback"):
        parts.append(f"[dim]{summary['traceback'].rstrip()}[/]")
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
