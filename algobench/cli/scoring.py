"""Scoring commands: score, leaderboard, report, plot profile, plot curves.

Commands only parse, call `scoring`, and write; algobench/cli/__init__.py registers them.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from algobench.cli.options import Format, FormatOpt, ResultsArg, Ruleset, print_rows, results_roots
from algobench.errors import UserError

if TYPE_CHECKING:  # scoring pulls in pandas and matplotlib: imported when a command runs
    from scoring.pipeline import Scored, ScoreOptions



class ByChoice(str, Enum):
    time = "time"
    steps = "steps"


class ClockChoice(str, Enum):
    refined = "refined"
    eval = "eval"


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    markdown = "markdown"


# Options shared by the commands, declared once (ResultsArg: options.py).
TableOpt = Annotated[Path | None, typer.Option(
    "--table", help="Score a published time-to-target CSV instead: a `submission` column and "
    "one column of seconds per workload (inf or empty = failed; optional `budget_s` row).")]
RulesetOpt = Annotated[Ruleset | None, typer.Option(
    "--ruleset", help="Which trials to score (default: the ruleset the trials share).")]
ByOpt = Annotated[ByChoice, typer.Option("--by", help="Time to target in seconds or steps.")]
TauOpt = Annotated[float, typer.Option("--tau-max", help="Ratios above this count as failures "
                                       "(AlgoPerf: 4).")]
TauPointsOpt = Annotated[int | None, typer.Option(
    "--tau-points", help="Integrate the profile as AlgoPerf does: the trapezoid rule on N linear "
    "tau points in [1, tau_max] (AlgoPerf's published scores: 100). Default: the exact area.",
    show_default=False)]
ClockOpt = Annotated[ClockChoice, typer.Option(
    "--time", help="refined: the first snapshot between evals that met the target (trials "
    "without one, from results before schema 2, use their eval-based time, with a warning); "
    "eval: AlgoPerf's time at the first eval that met it. A --table is scored as published.")]
ContendedOpt = Annotated[bool, typer.Option(
    "--allow-contended", help="Rank trials run on a busy machine (contention.contended in "
    "summary.json), marked ⚠; refused otherwise.")]
OverridesOpt = Annotated[bool, typer.Option(
    "--allow-overrides", help="Rank together trials of one workload run with different "
    "settings (--budget-s, --eval-period-s, --eval-every-steps, --batch-size, --max-steps); "
    "refused otherwise.")]
BaselineOpt = Annotated[str | None, typer.Option(
    "--baseline", help="Also report the geometric-mean speedup against this submission.")]
BootstrapOpt = Annotated[int, typer.Option(
    "--bootstrap", help="Bootstrap resamples over studies for the 90% intervals (0 = none).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")]
VariantOpt = Annotated[list[str] | None, typer.Option(
    "--variant-rule", help="AlgoPerf v0.5 variant rule: VARIANT=BASE (repeatable), or `auto` "
    "to pair `name_suffix` workloads with `name`.")]
MixedHardwareOpt = Annotated[bool, typer.Option(
    "--allow-mixed-hardware", help="Score trials with different hardware_key together.")]
MixedFrameworksOpt = Annotated[bool, typer.Option(
    "--allow-mixed-frameworks", help="Score trials from different frameworks together.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="File to write.")]


def make_options(*, ruleset: Ruleset | None, by: ByChoice, clock: ClockChoice,
                 tau_max: float, tau_points: int | None, baseline: str | None, bootstrap: int,
                 seed: int, variant_rule: list[str] | None, allow_mixed_hardware: bool,
                 allow_mixed_frameworks: bool, allow_contended: bool,
                 allow_overrides: bool) -> ScoreOptions:
    from scoring.pipeline import ScoreOptions  # (pandas, matplotlib: when the command runs)

    return ScoreOptions(
        ruleset=None if ruleset is None else ruleset.value, by=by.value, clock=clock.value,
        tau_max=tau_max, tau_points=tau_points, baseline=baseline, n_bootstrap=bootstrap,
        seed=seed, variant_rule=tuple(variant_rule or ()),
        allow_mixed_hardware=allow_mixed_hardware, allow_mixed_frameworks=allow_mixed_frameworks,
        allow_contended=allow_contended, allow_overrides=allow_overrides)


def run_scoring(results: list[Path] | None, table: Path | None, options: ScoreOptions, *,
                with_evals: bool = False) -> Scored:
    from scoring.pipeline import score_results, score_table  # (pandas, matplotlib: when the command runs)

    if table is not None and results:
        raise UserError("give either RESULTS folders or --table, not both")
    if table is not None:
        scored = score_table(table, options=options)
    else:
        scored = score_results(results_roots(results), options=options,
                               with_evals=with_evals)
    print_warnings(scored)
    return scored


def print_warnings(scored: Scored) -> None:
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    lines = list(scored.notes)
    if scored.loaded is not None:
        lines += [f"skipped {s.path}: {s.reason}" for s in scored.loaded.skipped]
        unfinished = scored.loaded.unfinished
        if unfinished:
            shown = ", ".join(str(p) for p in unfinished[:3])
            more = f" and {len(unfinished) - 3} more" if len(unfinished) > 3 else ""
            lines.append(f"{len(unfinished)} unfinished trial(s) without summary.json not "
                         f"scored: {shown}{more}")
    for line in lines:
        err.print(f"warning: {line}", markup=False)


def stdout_console() -> Console:
    """Wide enough for a leaderboard when piped to a file."""
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=200)


def check_out(out: Path, *, allowed: tuple[str, ...]) -> str:
    """The format named by --out's extension; an unknown one is a UserError (before any work)."""
    suffix = out.suffix.lower().lstrip(".")
    if suffix not in allowed:
        listed = ", ".join(f".{ext}" for ext in allowed)
        raise UserError(f"cannot write '{out}': unknown extension "
                        f"'{out.suffix or '(none)'}'; use {listed}")
    return suffix


def write_atomic(out: Path, data: bytes) -> None:
    """Temporary file in the same folder, fsync, then rename: never a half-written output."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def score(results: ResultsArg = None, table: TableOpt = None, ruleset: RulesetOpt = None,
          by: ByOpt = ByChoice.time, clock: ClockOpt = ClockChoice.refined,
          tau_max: TauOpt = 4.0, tau_points: TauPointsOpt = None, baseline: BaselineOpt = None,
          fmt: Annotated[OutputFormat, typer.Option("--format", help="Output format.")]
          = OutputFormat.table,
          bootstrap: BootstrapOpt = 1000, seed: SeedOpt = 0, variant_rule: VariantOpt = None,
          allow_mixed_hardware: MixedHardwareOpt = False,
          allow_mixed_frameworks: MixedFrameworksOpt = False,
          allow_contended: ContendedOpt = False, allow_overrides: OverridesOpt = False) -> None:
    """Benchmark scores (AlgoPerf performance-profile area) with 90% bootstrap intervals.

    Example, AlgoPerf's published scores from its table: algobench score --table ttt.csv --tau-points 100
    """
    from scoring import tables  # (pandas, matplotlib: when the command runs)

    options = make_options(ruleset=ruleset, by=by, clock=clock, tau_max=tau_max,
                           tau_points=tau_points, baseline=baseline, bootstrap=bootstrap,
                           seed=seed, variant_rule=variant_rule,
                           allow_mixed_hardware=allow_mixed_hardware,
                           allow_mixed_frameworks=allow_mixed_frameworks,
                           allow_contended=allow_contended, allow_overrides=allow_overrides)
    scored = run_scoring(results, table, options)
    if fmt is OutputFormat.table:
        console = stdout_console()
        console.print(tables.score_table(scored))
        if scored.card.speedups is not None:
            console.print(tables.speedup_table(scored))
        console.print(tables.caption(scored), style="dim", markup=False)
        return
    frame = tables.score_frame(scored)
    text = {OutputFormat.csv: lambda: tables.to_csv(frame),
            OutputFormat.json: lambda: tables.to_json(frame),
            OutputFormat.markdown: lambda: tables.to_markdown(
                frame, caption_text=tables.caption(scored))}[fmt]()
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def leaderboard(results: ResultsArg = None, table: TableOpt = None, ruleset: RulesetOpt = None,
                by: ByOpt = ByChoice.time, clock: ClockOpt = ClockChoice.refined,
                tau_max: TauOpt = 4.0, tau_points: TauPointsOpt = None,
                baseline: BaselineOpt = None, bootstrap: BootstrapOpt = 1000, seed: SeedOpt = 0,
                variant_rule: VariantOpt = None, allow_mixed_hardware: MixedHardwareOpt = False,
                allow_mixed_frameworks: MixedFrameworksOpt = False,
                allow_contended: ContendedOpt = False,
                allow_overrides: OverridesOpt = False, fmt: FormatOpt = Format.table) -> None:
    """Leaderboard: rank, score with interval, per-workload time to target and ratio to best.

    Example: algobench leaderboard results --format csv"""
    from scoring.tables import leaderboard_rows, leaderboard_table  # (pandas: when the command runs)

    options = make_options(ruleset=ruleset, by=by, clock=clock, tau_max=tau_max,
                           tau_points=tau_points, baseline=baseline, bootstrap=bootstrap,
                           seed=seed, variant_rule=variant_rule,
                           allow_mixed_hardware=allow_mixed_hardware,
                           allow_mixed_frameworks=allow_mixed_frameworks,
                           allow_contended=allow_contended, allow_overrides=allow_overrides)
    scored = run_scoring(results, table, options)
    if not print_rows(leaderboard_rows(scored), fmt):
        stdout_console().print(leaderboard_table(scored))


def report(results: ResultsArg = None, out: OutOpt = Path("report.html"),
           ruleset: RulesetOpt = None, by: ByOpt = ByChoice.time,
           clock: ClockOpt = ClockChoice.refined, tau_max: TauOpt = 4.0,
           tau_points: TauPointsOpt = None, baseline: BaselineOpt = None,
           bootstrap: BootstrapOpt = 1000, seed: SeedOpt = 0, variant_rule: VariantOpt = None,
           allow_mixed_hardware: MixedHardwareOpt = False,
           allow_mixed_frameworks: MixedFrameworksOpt = False,
           allow_contended: ContendedOpt = False, allow_overrides: OverridesOpt = False) -> None:
    """One self-contained HTML report: leaderboard, budgets and settings, profiles, curves,
    per-workload tables, contended trials."""
    from scoring.report import build_report  # (pandas, matplotlib: when the command runs)

    check_out(out, allowed=("html", "htm"))
    options = make_options(ruleset=ruleset, by=by, clock=clock, tau_max=tau_max,
                           tau_points=tau_points, baseline=baseline, bootstrap=bootstrap,
                           seed=seed, variant_rule=variant_rule,
                           allow_mixed_hardware=allow_mixed_hardware,
                           allow_mixed_frameworks=allow_mixed_frameworks,
                           allow_contended=allow_contended, allow_overrides=allow_overrides)
    scored = run_scoring(results, None, options, with_evals=True)
    write_atomic(out, build_report(scored, scored.loaded.evals).encode("utf-8"))
    typer.echo(f"wrote {out}")


def plot_profile(results: ResultsArg = None, out: OutOpt = Path("profile.png"),
                 table: TableOpt = None, ruleset: RulesetOpt = None, by: ByOpt = ByChoice.time,
                 clock: ClockOpt = ClockChoice.refined, tau_max: TauOpt = 4.0,
                 tau_points: TauPointsOpt = None, bootstrap: BootstrapOpt = 1000,
                 seed: SeedOpt = 0, variant_rule: VariantOpt = None,
                 allow_mixed_hardware: MixedHardwareOpt = False,
                 allow_mixed_frameworks: MixedFrameworksOpt = False,
                 allow_contended: ContendedOpt = False,
                 allow_overrides: OverridesOpt = False) -> None:
    """Performance profiles rho(tau), with bootstrap bands (PNG, SVG or PDF by extension)."""
    from scoring.plots import FORMATS, profile_figure  # (pandas, matplotlib: when the command runs)

    fmt = check_out(out, allowed=FORMATS)
    options = make_options(ruleset=ruleset, by=by, clock=clock, tau_max=tau_max,
                           tau_points=tau_points, baseline=None, bootstrap=bootstrap, seed=seed,
                           variant_rule=variant_rule, allow_mixed_hardware=allow_mixed_hardware,
                           allow_mixed_frameworks=allow_mixed_frameworks,
                           allow_contended=allow_contended, allow_overrides=allow_overrides)
    figure = profile_figure(run_scoring(results, table, options))
    write_atomic(out, figure_data(figure, fmt))
    typer.echo(f"wrote {out}")


def plot_curves(results: ResultsArg = None, out: OutOpt = Path("curves.png"),
                ruleset: RulesetOpt = None, clock: ClockOpt = ClockChoice.refined,
                bootstrap: BootstrapOpt = 1000, seed: SeedOpt = 0,
                allow_mixed_hardware: MixedHardwareOpt = False,
                allow_mixed_frameworks: MixedFrameworksOpt = False,
                allow_contended: ContendedOpt = False,
                allow_overrides: OverridesOpt = False) -> None:
    """Target metric against submission time: one subplot per workload, target as a line."""
    from scoring.plots import FORMATS, curves_figure  # (pandas, matplotlib: when the command runs)

    fmt = check_out(out, allowed=FORMATS)
    options = make_options(ruleset=ruleset, by=ByChoice.time, clock=clock, tau_max=4.0,
                           tau_points=None, baseline=None, bootstrap=bootstrap, seed=seed,
                           variant_rule=None, allow_mixed_hardware=allow_mixed_hardware,
                           allow_mixed_frameworks=allow_mixed_frameworks,
                           allow_contended=allow_contended, allow_overrides=allow_overrides)
    scored = run_scoring(results, None, options, with_evals=True)
    write_atomic(out, figure_data(curves_figure(scored, scored.loaded.evals), fmt))
    typer.echo(f"wrote {out}")


def figure_data(figure, fmt: str) -> bytes:
    from scoring.plots import figure_bytes  # (pandas, matplotlib: when the command runs)

    return figure_bytes(figure, fmt=fmt, dpi=150)
