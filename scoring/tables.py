"""Text renderings of a scorecard: csv / json / markdown strings and rich tables.

Every rendering shows the 90% interval next to each score and each per-workload speedup.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
from rich.markup import escape
from rich.table import Table

from scoring.pipeline import Scored

FAIL = "✗"
CONTENDED = "⚠"  # marks a result with contended trials in it


def fmt_time(value: float, unit: str, *, inf: str = FAIL) -> str:
    if not np.isfinite(value):
        return inf
    if unit == "steps":
        return f"{value:,.0f} steps"
    return f"{value:,.0f} s" if value >= 100 else f"{value:.3g} s"


def fmt_interval(low: float, high: float, *, digits: int = 3) -> str:
    def one(x: float) -> str:
        return f"{x:.{digits}f}" if np.isfinite(x) else "inf"
    return f"[{one(low)}, {one(high)}]"


def fmt_time_interval(low: float, high: float, unit: str) -> str:
    """`[700 s, 950 s]`; an unbounded end (some resamples never reached) is ∞."""
    return f"[{fmt_time(low, unit, inf='∞')}, {fmt_time(high, unit, inf='∞')}]"


def uncertainty_line(scored: Scored) -> str:
    card = scored.card
    if card.n_bootstrap == 0:
        return "no interval (nothing to resample)"
    return (f"{card.level:.0%} interval: bootstrap over studies, {card.n_bootstrap} resamples, "
            f"seed {card.seed}")


def integration_line(card) -> str:
    if card.tau_points is None:
        return "exact area under rho"
    return f"trapezoid rule on {card.tau_points} tau points (AlgoPerf)"


def clock_line(scored: Scored) -> str:
    """Which crossing the times are: refined (with its fallback) or AlgoPerf's eval-based one."""
    if scored.clock is None:
        return "as published"
    if scored.clock == "eval":
        return "at the first eval meeting it (AlgoPerf)"
    fallback = (f"; {scored.n_unrefined} trial(s) without one at their eval"
                if scored.n_unrefined else "")
    return f"refined crossing between evals{fallback}"


def overrides_line(scored: Scored) -> str | None:
    """`overridden settings: gpt2/smoke budget_s=60`, or None when every trial ran the preset."""
    if scored.settings is None:
        return None
    changed = [f"{row.workload} {' / '.join(row.settings)}"
               for row in scored.settings.itertuples(index=False) if row.settings != ("default",)]
    return "overridden settings: " + "; ".join(changed) if changed else None


def caption(scored: Scored) -> str:
    card = scored.card
    ruleset = f"{scored.ruleset} ruleset · " if scored.ruleset else ""
    by = "submission time" if card.unit == "s" else "steps"
    parts = [f"{ruleset}time to target by {by}, {clock_line(scored)}",
             f"tau_max {card.tau_max:g} · {integration_line(card)}",
             uncertainty_line(scored), "hardware: " + "; ".join(scored.hardware)]
    if card.baseline:
        parts.insert(3, f"speedup vs {card.baseline} (failures at budget + 1 s)")
    overrides = overrides_line(scored)
    if overrides:
        parts.append(overrides)
    if scored.contended is not None and not scored.contended.empty:
        parts.append(f"{CONTENDED} {len(scored.contended)} contended trial(s) ranked "
                     "(--allow-contended): their times are not trustworthy")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# Machine-readable: csv / json / markdown


def score_frame(scored: Scored) -> pd.DataFrame:
    """One row per submission: rank, submission, score, score_low, score_high, failed, ...,
    contended_trials, then `time:<workload>` (median time to target) and, with a baseline,
    `speedup:<workload>` with its `speedup_low:` / `speedup_high:` bounds."""
    card = scored.card
    frame = card.scores.set_index("submission", drop=False)
    frame["contended_trials"] = [scored.contended_count(name) for name in frame.index]
    for workload in card.times.columns:
        frame[f"time:{workload}"] = card.times[workload]
    if card.speedups is not None:
        for column in ["speedup", "speedup_low", "speedup_high"]:
            wide = card.speedups.pivot(index="submission", columns="workload", values=column)
            for workload in card.times.columns:
                frame[f"{column}:{workload}"] = wide[workload]
    return frame.reset_index(drop=True)


def to_csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, float_format="%.6g")


def to_json(frame: pd.DataFrame) -> str:
    """A list of records; infinity (not reached) is written as null, as in summary.json."""
    def clean(value):
        if isinstance(value, (float, np.floating)):
            return None if not math.isfinite(value) else float(value)
        if isinstance(value, np.integer):
            return int(value)
        return value
    records = [{key: clean(value) for key, value in row.items()}
               for row in frame.to_dict(orient="records")]
    return json.dumps(records, indent=2)


def to_markdown(frame: pd.DataFrame, *, caption_text: str = "") -> str:
    def cell(value) -> str:
        if isinstance(value, (float, np.floating)):
            return "inf" if np.isinf(value) else f"{value:.4g}"
        return str(value).replace("|", "\\|")
    lines = ["| " + " | ".join(frame.columns) + " |",
             "|" + "|".join("---" for _ in frame.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in frame.itertuples(index=False)]
    notes = "".join(f"\n\n{line}" for line in caption_text.splitlines())
    return "\n".join(lines) + notes


# ---------------------------------------------------------------------------------------------
# Rich tables


def score_table(scored: Scored) -> Table:
    """The compact table of `algobench score`."""
    card = scored.card
    table = Table(title="Benchmark scores")
    for name in ["rank", "submission", "score", f"{card.level:.0%} interval", "failed"]:
        table.add_column(name, justify="left" if name == "submission" else "right")
    has_speedup = card.speedups is not None
    if has_speedup:
        table.add_column(f"speedup vs {card.baseline}", justify="right")
        table.add_column(f"{card.level:.0%} interval", justify="right")
    has_contended = scored.contended is not None and not scored.contended.empty
    if has_contended:
        table.add_column("contended", justify="right")
    for row in card.scores.itertuples(index=False):
        cells = [str(row.rank), escape(row.submission), f"{row.score:.3f}",
                 escape(fmt_interval(row.score_low, row.score_high)),
                 f"{row.failed}/{row.workloads}"]
        if has_speedup:
            cells += [f"{row.speedup:.3f}x",
                      escape(fmt_interval(row.speedup_low, row.speedup_high))]
        if has_contended:
            n = scored.contended_count(row.submission)
            cells.append(f"[yellow]{CONTENDED} {n} trial(s)[/yellow]" if n else "")
        table.add_row(*cells)
    return table


def speedup_table(scored: Scored) -> Table:
    """Per-workload speedups against the baseline, with intervals."""
    card = scored.card
    table = Table(title=f"Per-workload speedup vs {card.baseline} (t_baseline / t_submission)")
    table.add_column("submission")
    for workload in card.times.columns:
        table.add_column(workload, justify="right")
    long = card.speedups.set_index(["submission", "workload"])
    for submission in card.scores["submission"]:
        cells = []
        for workload in card.times.columns:
            row = long.loc[(submission, workload)]
            bounds = fmt_interval(row.speedup_low, row.speedup_high, digits=2)
            cells.append(f"{row.speedup:.2f}x {escape(bounds)}")
        table.add_row(escape(submission), *cells)
    return table


def workload_cell(scored: Scored, submission: str, workload: str) -> str:
    """`812 s [700, 950] 1.20x`, or a failure mark saying why; a line more for contended trials."""
    return ratio_text(scored, submission, workload) + contended_mark(scored, submission, workload)


def ratio_text(scored: Scored, submission: str, workload: str) -> str:
    card = scored.card
    time = card.times.at[submission, workload]
    ratio = card.ratios.at[submission, workload]
    if not np.isfinite(time):
        return f"[red]{FAIL} not reached[/red]"
    low, high = card.time_low.at[submission, workload], card.time_high.at[submission, workload]
    spread = " " + escape(fmt_time_interval(low, high, card.unit)) if card.n_bootstrap else ""
    if not np.isfinite(ratio):
        return f"{fmt_time(time, card.unit)}{spread} [red]{FAIL} ratio > {card.tau_max:g}[/red]"
    style = "bold green" if ratio == 1 else ""
    mark = f"[{style}]{ratio:.2f}x[/{style}]" if style else f"{ratio:.2f}x"
    return f"{fmt_time(time, card.unit)}{spread} {mark}"


def contended_mark(scored: Scored, submission: str, workload: str) -> str:
    n = scored.contended_count(submission, workload)
    return f"\n[yellow]{CONTENDED} {n} contended trial(s)[/yellow]" if n else ""


def leaderboard_rows(scored: Scored) -> list[dict]:
    """The leaderboard as plain rows (for --format json/csv): each score column, then per workload
    the time (s or steps; null: not reached) and the ratio to the best (null: past tau_max)."""
    card = scored.card
    rows = []
    for row in card.scores.to_dict(orient="records"):
        out = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for workload in card.times.columns:
            time, ratio = float(card.times.at[row["submission"], workload]), float(card.ratios.at[row["submission"], workload])
            out[f"{workload}_{'time_s' if card.unit == 's' else 'steps'}"] = time if np.isfinite(time) else None
            out[f"{workload}_ratio"] = ratio if np.isfinite(ratio) else None
        rows.append(out)
    return rows


def leaderboard_table(scored: Scored) -> Table:
    """rank, submission, score with interval, per workload: time to target and ratio to best."""
    card = scored.card
    table = Table(title="algobench leaderboard", caption=escape(caption(scored)),
                  caption_justify="left", show_lines=True)
    table.add_column("rank", justify="right")
    table.add_column("submission")
    table.add_column(f"score [{card.level:.0%}]", justify="right")
    if card.speedups is not None:
        table.add_column(f"speedup vs {card.baseline}", justify="right")
    for workload in card.times.columns:
        table.add_column(f"{workload}\n{'time' if card.unit == 's' else 'steps'} · ratio to best", justify="right")
    for row in card.scores.itertuples(index=False):
        cells = [str(row.rank), escape(row.submission),
                 f"{row.score:.3f}\n{escape(fmt_interval(row.score_low, row.score_high))}"]
        if card.speedups is not None:
            cells.append(f"{row.speedup:.2f}x\n"
                         f"{escape(fmt_interval(row.speedup_low, row.speedup_high, digits=2))}")
        cells += [workload_cell(scored, row.submission, w) for w in card.times.columns]
        table.add_row(*cells)
    return table
