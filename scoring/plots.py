"""Matplotlib figure builders. They return figures; the commands decide where they go.

Figures are built with `matplotlib.figure.Figure` directly: no pyplot state, no GUI backend;
PNG goes through Agg, so everything renders headless.
"""

from __future__ import annotations

import io
import math
import textwrap

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from scoring.pipeline import Scored
from scoring.profiles import profile, tau_grid
from scoring.tables import fmt_time, fmt_time_interval, integration_line, uncertainty_line
from scoring.ttt import trial_labels

FORMATS = ("png", "svg", "pdf")  # what --out may end with
GRID_POINTS = 400  # tau values for the bootstrap band


def colours(submissions: list[str]) -> dict[str, tuple]:
    """One fixed colour per submission, the same in every figure."""
    cmap = matplotlib.colormaps["tab10" if len(submissions) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(sorted(submissions))}


def profile_figure(scored: Scored) -> Figure:
    """rho_s(tau) on [1, tau_max] for every submission, with its bootstrap band."""
    card = scored.card
    colour = colours(list(card.ratios.index))
    grid = np.linspace(1.0, card.tau_max, GRID_POINTS)
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    for row in card.scores.itertuples(index=False):
        s = card.ratios.index.get_loc(row.submission)  # rows of ratios: submission order
        ratios = card.ratios.iloc[s].to_numpy(float)
        label = f"{row.submission}: {row.score:.3f} [{row.score_low:.3f}, {row.score_high:.3f}]"
        if card.tau_points is None:  # exact steps
            taus = np.unique(np.concatenate([[1.0, card.tau_max], ratios[np.isfinite(ratios)]]))
            rho = profile(ratios[None, :], taus)[0]
            ax.step(taus, rho, where="post", color=colour[row.submission], lw=2, label=label)
        else:  # AlgoPerf's: rho on its grid, joined by the lines its trapezoid rule integrates
            taus = tau_grid(card.tau_max, card.tau_points)
            rho = profile(ratios[None, :], taus)[0]
            ax.plot(taus, rho, color=colour[row.submission], lw=2, label=label)
        if card.boot_ratios is not None:
            band = profile(card.boot_ratios[:, s, :][:, None, :], grid)[:, 0, :]
            low, high = np.quantile(band, [(1 - card.level) / 2, (1 + card.level) / 2], axis=0)
            ax.fill_between(grid, low, high, step="post", color=colour[row.submission],
                            alpha=0.12, lw=0)
    ax.set_xlim(1.0, card.tau_max)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("τ (time to target / best time to target)")
    ax.set_ylabel("fraction of workloads within τ of the best")
    n_workloads = card.times.shape[1]
    ax.set_title(f"Performance profiles over {n_workloads} workload{'s' if n_workloads != 1 else ''}"
                 f" · {integration_line(card)}\n{uncertainty_line(scored)}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(title="score [interval]", fontsize=8, loc="lower right")
    return fig


def trial_segments(evals: pd.DataFrame) -> dict[str, np.ndarray]:
    """trial_id -> (n, 2) array of (submission_time_s, value), sorted by time."""
    ordered = evals.sort_values(["trial_id", "submission_time_s"], kind="stable")
    xy = ordered[["submission_time_s", "value"]].to_numpy(float)
    ids = ordered["trial_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.array([], int)
    ends = np.r_[starts[1:], len(ids)]
    return {ids[a]: xy[a:b] for a, b in zip(starts, ends)}


def curves_figure(scored: Scored, evals: pd.DataFrame) -> Figure:
    """The target metric against submission time: one subplot per workload, one colour per
    submission, the target as a dashed line, the median time to target with its interval."""
    trials, card = scored.trials, scored.card
    labels = trial_labels(trials)
    workloads = sorted(set(labels))
    colour = colours(sorted(set(trials["submission"])))
    segments = trial_segments(evals[evals["trial_id"].isin(set(trials["trial_id"]))])
    ncols = min(3, len(workloads))
    nrows = math.ceil(len(workloads) / ncols)
    fig = Figure(figsize=(5.5 * ncols, 4 * nrows), layout="constrained")
    for i, workload in enumerate(workloads):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        here = trials[labels == workload]
        for submission, group in here.groupby("submission", sort=True):
            lines = [segments[t] for t in group["trial_id"] if t in segments]
            ax.add_collection(LineCollection(lines, colors=[colour[submission]], lw=1, alpha=0.6))
            ax.plot([], [], color=colour[submission], label=curve_label(card, submission, workload))
        for (metric, value, mode), _ in here.groupby(["target_metric", "target_value",
                                                      "target_mode"]):
            sign = "≤" if mode == "min" else "≥"
            ax.axhline(value, color="black", ls="--", lw=1,
                       label=f"target {metric} {sign} {value:g}")
            mark_times(ax, card, workload, y=value, colour=colour)
        metric = ", ".join(sorted(set(here["target_metric"])))
        ax.autoscale_view()
        use_log_scale(ax, here, segments)
        ax.set_title(workload)
        ax.set_xlabel("submission time (s)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    caption = f"Validation curves · markers: median time to target, {uncertainty_line(scored)}"
    fig.suptitle("\n".join(textwrap.wrap(caption, width=int(12 * 5.5 * ncols))), fontsize=10)
    return fig


def curve_label(card, submission: str, workload: str) -> str:
    if card.unit != "s" or workload not in card.times.columns:
        return submission
    time = card.times.at[submission, workload]
    if not np.isfinite(time):
        return f"{submission}: not reached"
    low, high = card.time_low.at[submission, workload], card.time_high.at[submission, workload]
    return f"{submission}: {fmt_time(time, 's')} {fmt_time_interval(low, high, 's')}"


def mark_times(ax, card, workload: str, *, y: float, colour: dict) -> None:
    """The median time to target of each submission on the target line, with its interval."""
    if card.unit != "s" or workload not in card.times.columns:
        return
    for submission in card.times.index:
        time = card.times.at[submission, workload]
        if not np.isfinite(time):
            continue
        low, high = card.time_low.at[submission, workload], card.time_high.at[submission, workload]
        high = high if np.isfinite(high) else time  # an open-ended interval: no right whisker
        ax.errorbar([time], [y], xerr=[[time - low], [high - time]], fmt="o", ms=5,
                    color=colour[submission], capsize=3, zorder=3)


def use_log_scale(ax, here: pd.DataFrame, segments: dict[str, np.ndarray]) -> None:
    """Losses spanning more than a decade read better on a log axis."""
    values = [segments[t][:, 1] for t in here["trial_id"] if t in segments]
    if not values or set(here["target_mode"]) != {"min"}:
        return
    values = np.concatenate(values)
    values = values[np.isfinite(values)]
    if len(values) and values.min() > 0 and values.max() / values.min() > 10:
        ax.set_yscale("log")


def figure_bytes(fig: Figure, *, fmt: str = "png", dpi: int = 110) -> bytes:
    """The rendered figure, in memory (for the HTML report)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi)
    return buffer.getvalue()
