"""Commands of the submissions library: `algobench plot schedule NAME --steps N --out FILE.png`.

Commands only parse, call algobench.schedules, draw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from algobench import schedules
from algobench.cli.options import check_ranges, write_output
from algobench.errors import UserError
from algobench.hparam_ranges import COUNT, FRACTION, POSITIVE

FIGURE_FORMATS = ("png", "svg", "pdf")


def _schedule_names(incomplete: str = "") -> list[str]:
    return [n for n in schedules.NAMES if n.startswith(incomplete)]


def plot_schedule(
    name: Annotated[str, typer.Argument(help=f"Schedule: {', '.join(schedules.NAMES)}.",
                                        autocompletion=_schedule_names, show_default=False)],
    steps: Annotated[int, typer.Option("--steps", help="Length of the run in steps, e.g. --steps 800.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write: .png, .svg or .pdf.")] = Path("schedule.png"),
    peak_lr: Annotated[float, typer.Option(help="Peak learning rate (the curve's maximum).")] = 1.0,
    warmup_frac: Annotated[float, typer.Option(help="Warmup as a fraction of the run.")] = 0.05,
    cooldown_frac: Annotated[float, typer.Option(help="wsd: the cooldown's fraction of the run.")] = 0.2,
    final_lr_frac: Annotated[float, typer.Option(help="Final lr as a fraction of the peak.")] = 0.0,
    grad_norms: Annotated[Path | None, typer.Option(
        help="refined: a .parquet/.csv of an earlier run's gradient norms (columns step, grad_norm).")] = None,
    tau: Annotated[float, typer.Option(help="refined: median-filter width as a fraction of the run.")] = 0.1,
    norm: Annotated[str, typer.Option(help="refined: l2 (SGD-type) or l1 (Adam-type) gradient norms.")] = "l2",
) -> None:
    """Plot learning-rate schedule NAME over a run of --steps steps.

    Example: algobench plot schedule wsd --steps 800 --out wsd.png
    """
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in FIGURE_FORMATS:
        raise UserError(f"cannot write '{out}': unknown extension '{out.suffix or '(none)'}'; "
                        f"use {', '.join('.' + f for f in FIGURE_FORMATS)}")
    check_ranges(dict(steps=steps, peak_lr=peak_lr, warmup_frac=warmup_frac, cooldown_frac=cooldown_frac,
                      final_lr_frac=final_lr_frac, tau=tau),
                 dict(steps=COUNT, peak_lr=POSITIVE, warmup_frac=FRACTION, cooldown_frac=FRACTION,
                      final_lr_frac=FRACTION, tau=FRACTION))  # (tau 0: no smoothing)
    lr_at = schedules.named(name, steps=steps, peak_lr=peak_lr, warmup_frac=warmup_frac,
                            cooldown_frac=cooldown_frac, final_lr_frac=final_lr_frac, grad_norms=grad_norms,
                            tau=tau, norm=norm)
    column = "grad_norm_l1" if norm == "l1" else "grad_norm"
    norms = schedules.load_grad_norms(grad_norms, column=column) if name == "refined" else None
    figure = schedule_figure(name, [lr_at(s) for s in range(steps)], grad_norms=norms, tau=tau)
    from scoring.plots import figure_bytes  # (matplotlib: only when a figure is drawn)

    write_output(out, figure_bytes(figure, fmt=fmt, dpi=150))
    typer.echo(f"wrote {out}")


def schedule_figure(name: str, lrs: list[float], *, grad_norms=None, tau: float = 0.1):
    """The lr against the step; for the refined schedule also the gradient norms it came from."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.0, 3.2), layout="constrained")
    ax = figure.add_subplot()
    ax.plot(range(len(lrs)), lrs, color="C0", label="learning rate")
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_title(f"{name}: {len(lrs)} steps, peak {max(lrs):.3g}, last {lrs[-1]:.3g}")
    ax.grid(alpha=0.3)
    if grad_norms is not None:
        twin = ax.twinx()
        steps = np.linspace(0, len(lrs) - 1, len(grad_norms))  # the earlier run stretched onto this one
        twin.plot(steps, grad_norms, color="C1", alpha=0.35, lw=0.8, label="gradient norm (earlier run)")
        twin.plot(steps, schedules.median_smooth(grad_norms, tau=tau), color="C1", lw=1.2, label="median-smoothed")
        twin.set_ylabel("gradient norm")
        figure.legend(loc="outside lower center", ncols=3, fontsize="small")
    return figure
