"""`algobench jobs` and `algobench cancel`, and `run --executor slurm|debug`: parse, then call algobench.slurm."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from algobench.cli.options import Format, FormatOpt, ResultsDirOpt, console, err_console
from algobench.display import outcome_panel
from algobench.errors import unknown
from algobench.slurm import jobs as job_records
from algobench.slurm.profile import EXECUTORS, load_profile
from algobench.specs import DEFAULT_RESULTS_DIR, TrialConfig

STATE_STYLE = {"COMPLETED": "green", "RUNNING": "cyan", "PENDING": "yellow", "REQUEUED": "yellow",
               "FAILED": "red", "CANCELLED": "red", "TIMEOUT": "red", "OUT_OF_MEMORY": "red"}


def submit_run(config: TrialConfig, *, executor: str, cluster: str, overrides: list[str], wait: bool) -> None:
    """`run --executor slurm|debug`: submit one trial; with --wait (always for debug), show its outcome."""
    from algobench.slurm import submit  # (submitit and torch: only when submitting)

    if executor not in EXECUTORS:
        raise unknown("executor", executor, EXECUTORS)
    profile = load_profile(cluster, overrides) if executor == "slurm" else None
    [sub] = submit.submit_trials([config], executor=executor, profile=profile, cluster=cluster)
    if executor == "slurm":
        console.print(f"submitted SLURM job [bold]{sub.job.job_id}[/] (cluster profile {cluster})\n"
                      f"  results: {sub.trial_dir}\n  log:     {sub.stdout}\n  errors:  {sub.stderr}",
                      highlight=False)
        if not wait:
            console.print("follow it with `algobench jobs`, stop it with "
                          f"`algobench cancel {sub.job.job_id}`", highlight=False)
            return
    try:
        with console.status(f"job {sub.job.job_id}: submitted") as status:
            [summary] = submit.wait([sub], on_state=lambda state: status.update(f"job {sub.job.job_id}: {state}"))
    except KeyboardInterrupt:
        err_console.print(f"stopped waiting; job {sub.job.job_id} goes on (algobench cancel {sub.job.job_id} "
                          "stops it)", highlight=False)
        raise typer.Exit(130) from None
    if summary is None:
        err_console.print(f"job {sub.job.job_id} ended without finishing the trial ({sub.job.state}); "
                          f"see {sub.stderr}\n{_error_tail(sub)}", highlight=False)
        raise typer.Exit(1)
    console.print(outcome_panel(summary, sub.trial_dir))


def _error_tail(sub) -> str:
    try:
        error = sub.job.exception()
    except Exception as err:  # the job left no result file (cancelled, killed)
        error = err
    return "\n".join(str(error).splitlines()[-12:]) if error else ""


def jobs(
    results_dir: ResultsDirOpt = DEFAULT_RESULTS_DIR,
    fmt: FormatOpt = Format.table,
) -> None:
    """Submitted SLURM jobs: state (pending, running, completed, failed, requeued...), requeues,
    trial outcome, results folder and log. Example: algobench jobs --results-dir results"""
    rows = job_records.task_rows(results_dir)
    if fmt is Format.json:
        print(json.dumps([row.__dict__ for row in rows], indent=2))
        return
    if not rows:
        console.print(f"no jobs submitted to {results_dir} (submit with: algobench run ... --executor slurm)")
        return
    table = Table(title=f"jobs ({results_dir})")
    for col in ("job", "kind", "state", "requeues", "trial", "results", "log"):
        table.add_column(col, overflow="fold")
    for r in rows:
        style = STATE_STYLE.get(r.state, "")
        table.add_row(r.job_id, r.kind, f"[{style}]{r.state}[/]" if style else r.state, str(r.requeues),
                      r.trial_status or "-", r.trial_dir, r.stdout)
    console.print(table)


def cancel(
    job: Annotated[str, typer.Argument(help="Job id (an array, or one task of it: 1234_5), as "
                                            "`algobench jobs` lists.")],
    results_dir: ResultsDirOpt = DEFAULT_RESULTS_DIR,
) -> None:
    """Cancel a submitted SLURM job; its trial folders stay, unfinished. Example: algobench cancel 1234"""
    folders = job_records.cancel(results_dir, job)
    console.print(f"cancelled job {job}; trial folder(s) left unfinished: {', '.join(folders)}", highlight=False)
