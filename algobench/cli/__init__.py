"""The `algobench` command line: the app, its command groups, and every command registered here,
explicitly. The commands live in the modules beside this one (run, tune, scoring, slurm,
library); each only parses its options and calls the library. Shared options: options.py."""

from __future__ import annotations

import sys

import typer

from algobench.cli import library, run, scoring, slurm, tune
from algobench.cli.options import err_console
from algobench.errors import UserError

app = typer.Typer(
    help="Benchmark neural-network training algorithms: time to a validation target, scored by "
         "performance profiles.\n\nExample: algobench run --workload gpt2 --submission adan",
    no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode="rich")
list_app = typer.Typer(help="List what is registered: algobench list workloads", no_args_is_help=True)
data_app = typer.Typer(help="Prepare datasets: algobench data prepare gpt2 --size smoke", no_args_is_help=True)
plot_app = typer.Typer(help="Figures: performance profiles, validation curves, learning-rate schedules.",
                       no_args_is_help=True)

app.command()(run.run)
list_app.command("workloads")(run.list_workloads)
list_app.command("submissions")(run.list_submissions)
data_app.command("prepare")(run.data_prepare)
app.command()(tune.tune)
app.command()(tune.runs)
app.command("score")(scoring.score)
app.command("leaderboard")(scoring.leaderboard)
app.command("report")(scoring.report)
plot_app.command("profile")(scoring.plot_profile)
plot_app.command("curves")(scoring.plot_curves)
plot_app.command("schedule")(library.plot_schedule)
app.command("jobs")(slurm.jobs)
app.command("cancel")(slurm.cancel)
app.add_typer(list_app, name="list")
app.add_typer(data_app, name="data")
app.add_typer(plot_app, name="plot")


def main() -> None:
    try:
        app()
    except UserError as err:
        err_console.print(f"[red]error:[/] {err}", highlight=False, soft_wrap=True)  # one line, however long
        sys.exit(err.exit_code)
