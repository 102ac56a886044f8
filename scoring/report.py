"""The HTML report: one self-contained string (inline CSS, figures as base64 data URIs)."""

from __future__ import annotations

import base64
from html import escape

import numpy as np
import pandas as pd

from scoring.pipeline import Scored
from scoring.plots import curves_figure, figure_bytes, profile_figure
from scoring.tables import CONTENDED, caption, fmt_interval, fmt_time, fmt_time_interval

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 1.5em; max-width: 1200px;
       color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .35em .6em; text-align: right; }
th { background: #f3f3f3; } td.name { text-align: left; font-weight: 600; }
td.fail { color: #b00; } td.best { color: #070; font-weight: 600; }
td.contended, td.note { color: #8a5a00; }
.caption { color: #555; white-space: pre-line; } img { max-width: 100%; }
.warn { color: #8a5a00; }
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def html_table(header: list[str], rows: list[list[tuple[str, str]]]) -> str:
    """rows hold (text, css class) cells; the first column is the name."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="{css}">{escape(text)}</td>' for text, css in row) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def ratio_cell(scored: Scored, submission: str, workload: str) -> tuple[str, str]:
    card = scored.card
    time, ratio = card.times.at[submission, workload], card.ratios.at[submission, workload]
    n = scored.contended_count(submission, workload)
    mark = f" · {CONTENDED} {n} contended" if n else ""
    if not np.isfinite(time):
        return f"✗ not reached{mark}", "fail"
    if not np.isfinite(ratio):
        return f"{fmt_time(time, card.unit)} · ✗ ratio > {card.tau_max:g}{mark}", "fail"
    css = "contended" if n else "best" if ratio == 1 else ""
    return f"{fmt_time(time, card.unit)} · {ratio:.2f}x{mark}", css


def leaderboard_html(scored: Scored) -> str:
    card = scored.card
    workloads = list(card.times.columns)
    header = ["rank", "submission", "score", f"{card.level:.0%} interval", "failed"]
    if card.speedups is not None:
        header += [f"speedup vs {card.baseline}", f"{card.level:.0%} interval"]
    header += [f"{w} (time · ratio)" for w in workloads]
    rows = []
    for row in card.scores.itertuples(index=False):
        cells = [(str(row.rank), ""), (row.submission, "name"), (f"{row.score:.3f}", ""),
                 (fmt_interval(row.score_low, row.score_high), ""),
                 (f"{row.failed}/{row.workloads}", "fail" if row.failed else "")]
        if card.speedups is not None:
            cells += [(f"{row.speedup:.3f}x", ""),
                      (fmt_interval(row.speedup_low, row.speedup_high), "")]
        cells += [ratio_cell(scored, row.submission, w) for w in workloads]
        rows.append(cells)
    return html_table(header, rows)


def workload_html(scored: Scored, workload: str) -> str:
    """One workload: time to target with interval, ratio, studies reached, speedup."""
    card = scored.card
    header = ["submission", f"time to target ({card.unit})", f"{card.level:.0%} interval",
              "ratio to best"]
    if scored.n_studies is not None:
        header.append("studies reached")
    speed = None
    if card.speedups is not None:
        header.append(f"speedup vs {card.baseline} [{card.level:.0%}]")
        speed = card.speedups.set_index(["submission", "workload"])
    rows = []
    for submission in card.scores["submission"]:
        time = card.times.at[submission, workload]
        low, high = card.time_low.at[submission, workload], card.time_high.at[submission, workload]
        text, css = ratio_cell(scored, submission, workload)
        ratio = card.ratios.at[submission, workload]
        cells = [(submission, "name"), (fmt_time(time, card.unit), "fail" if css == "fail" else ""),
                 (fmt_time_interval(low, high, card.unit), ""),
                 (f"{ratio:.2f}x" if np.isfinite(ratio) else "✗", css)]
        if scored.n_studies is not None:
            cells.append((f"{scored.n_reached.at[submission, workload]}"
                          f"/{scored.n_studies.at[submission, workload]}", ""))
        if speed is not None:
            one = speed.loc[(submission, workload)]
            cells.append((f"{one.speedup:.2f}x "
                          f"{fmt_interval(one.speedup_low, one.speedup_high, digits=2)}", ""))
        rows.append(cells)
    return html_table(header, rows)


def budget_text(budgets: tuple[float, ...]) -> str:
    return ", ".join(fmt_time(b, "s") for b in budgets)


def workload_heading(scored: Scored, workload: str) -> str:
    """`gpt2/smoke · budget 120 s · preset settings`, or the overrides it ran with."""
    if scored.settings is None or workload not in set(scored.settings["workload"]):
        return workload
    row = scored.settings.set_index("workload").loc[workload]
    settings = ("preset settings" if row.settings == ("default",)
                else "overrides: " + " / ".join(row.settings))
    return f"{workload} · budget {budget_text(row.budget_s)} · {settings}"


def settings_html(scored: Scored) -> str:
    """Each workload's budget and the settings its trials ran with."""
    if scored.settings is None:
        return "<p>as published: budgets and settings are not in the table</p>"
    rows = [[(row.workload, "name"), (budget_text(row.budget_s), ""),
             (" / ".join(row.settings), "" if row.settings == ("default",) else "note"),
             (str(row.trials), "")]
            for row in scored.settings.itertuples(index=False)]
    return html_table(["workload", "budget", "settings (overrides of the preset)", "trials"], rows)


def contended_html(scored: Scored) -> str:
    if scored.contended is None or scored.contended.empty:
        return ""
    rows = [[(r.trial_id, "name"), (r.submission, ""), (r.workload, ""), (r.why, "contended")]
            for r in scored.contended.itertuples(index=False)]
    return (f"<h2>{CONTENDED} Contended trials (ranked with --allow-contended)</h2>"
            + html_table(["trial", "submission", "workload", "why"], rows))


def hardware_html(scored: Scored) -> str:
    trials = scored.trials
    if trials.empty:
        return "".join(f"<p>{escape(line)}</p>" for line in scored.hardware)
    fields = ["cpu", "cpu_count", "gpu", "gpu_count", "gpu_driver", "torch"]
    rows = []
    for key, group in trials.groupby("hardware_key", sort=True):
        hardware = group["hardware"].iloc[0]
        frameworks = ", ".join(sorted(set(group["framework"])))
        rows.append([(str(key), "name")] + [(str(hardware.get(f, "")), "") for f in fields]
                    + [(frameworks, ""), (str(len(group)), "")])
    return html_table(["hardware_key", *fields, "framework", "trials"], rows)


def warnings_html(scored: Scored) -> str:
    lines = list(scored.notes)
    if scored.loaded is not None:
        lines += [f"skipped {s.path}: {s.reason}" for s in scored.loaded.skipped]
        if scored.loaded.unfinished:
            lines.append(f"{len(scored.loaded.unfinished)} unfinished trial(s) without "
                         "summary.json were not scored")
    if not lines:
        return ""
    items = "".join(f"<li>{escape(line)}</li>" for line in lines)
    return f'<h2>Warnings</h2><ul class="warn">{items}</ul>'


def build_report(scored: Scored, evals: pd.DataFrame, *, title: str = "algobench report") -> str:
    """The whole report as one HTML string."""
    profile_png = figure_bytes(profile_figure(scored))
    curves_png = figure_bytes(curves_figure(scored, evals))
    per_workload = "".join(
        f"<h3>{escape(workload_heading(scored, w))}</h3>{workload_html(scored, w)}"
        for w in scored.card.times.columns)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>{CSS}</style></head>
<body>
<h1>{escape(title)}</h1>
<p class="caption">{escape(caption(scored))}</p>
<h2>Leaderboard</h2>
{leaderboard_html(scored)}
{contended_html(scored)}
<h2>Budgets and settings</h2>
{settings_html(scored)}
<h2>Hardware</h2>
{hardware_html(scored)}
<h2>Performance profiles</h2>
<img alt="performance profiles" src="{data_uri(profile_png)}">
<h2>Validation curves</h2>
<img alt="validation curves" src="{data_uri(curves_png)}">
<h2>Per-workload results</h2>
{per_workload}
{warnings_html(scored)}
</body></html>
"""
