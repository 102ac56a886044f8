"""The record of submitted SLURM jobs and their states: what `algobench jobs` lists.

Each submission writes `<results_dir>/_jobs/<job id>.json` (its trials' folders and log paths);
submitit keeps its pickles and logs beside it, in `_jobs/<job id>/`. States come from `sacct`
(every attempt of a requeued job is a row there), or from `squeue` where there is no accounting.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from algobench import layout
from algobench.errors import UserError, closest
from algobench.files import write_json

JOBS_DIR = "_jobs"


def jobs_dir(results_dir: Path) -> Path:
    return Path(results_dir) / JOBS_DIR


def record(results_dir: Path, *, kind: str, cluster: str, tasks: list[tuple[str, Path, Path, Path]]) -> Path:
    """Write the record of one submission: tasks are (job id, trial folder, stdout, stderr)."""
    job_id = tasks[0][0].split("_")[0]
    path = jobs_dir(results_dir) / f"{job_id}.json"
    write_json(path, {
        "job_id": job_id, "kind": kind, "cluster": cluster,
        "submitted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tasks": [{"job_id": j, "trial_dir": str(d), "stdout": str(o), "stderr": str(e)} for j, d, o, e in tasks],
    })
    return path


def records(results_dir: Path) -> list[dict]:
    found = []
    for path in sorted(jobs_dir(results_dir).glob("*.json")):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(found, key=lambda r: (r.get("submitted_at", ""), r.get("job_id", "")))


@dataclass(frozen=True)
class TaskRow:
    job_id: str
    kind: str
    state: str  # SLURM's: PENDING, RUNNING, REQUEUED, COMPLETED, FAILED, CANCELLED, TIMEOUT, ...
    requeues: int
    trial_status: str | None  # summary.json's status once the trial has ended
    trial_dir: str
    stdout: str
    stderr: str


def task_rows(results_dir: Path) -> list[TaskRow]:
    recs = records(results_dir)
    since = min((r["submitted_at"] for r in recs if r.get("submitted_at")), default=None)
    states = slurm_states([r["job_id"] for r in recs], since=since)
    rows = []
    for rec in recs:
        for task in rec["tasks"]:
            state, requeues = states.get(task["job_id"]) or states.get(rec["job_id"]) or ("UNKNOWN", 0)
            rows.append(TaskRow(job_id=task["job_id"], kind=rec.get("kind", "run"), state=state, requeues=requeues,
                                trial_status=_trial_status(Path(task["trial_dir"])), trial_dir=task["trial_dir"],
                                stdout=task["stdout"], stderr=task["stderr"]))
    return rows


def slurm_states(job_ids: list[str], since: str | None = None) -> dict[str, tuple[str, int]]:
    """{job id or array task id: (latest state, times requeued)}; empty without SLURM.

    `since` (ISO time of the first submission) keeps out older jobs with the same ids, which a
    cluster whose state was reset hands out again."""
    if not job_ids:
        return {}
    start = ["-S", datetime.fromisoformat(since).astimezone().strftime("%Y-%m-%dT%H:%M:%S")] if since else []
    try:
        out = subprocess.run(["sacct", "-n", "-P", "-X", "-D", "-o", "JobID,State", *start, "-j", ",".join(job_ids)],
                             capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout.strip():
            return parse_sacct(out.stdout)
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(job_ids)],
                             capture_output=True, text=True, timeout=30)
        return {jid: (state, 0) for jid, state in _rows(out.stdout)} if out.returncode == 0 else {}
    except (OSError, subprocess.TimeoutExpired):
        return {}


def parse_sacct(text: str) -> dict[str, tuple[str, int]]:
    """sacct -D rows: one per attempt of a job, the requeued ones in state REQUEUED."""
    states: dict[str, tuple[str, int]] = {}
    for jid, state in _rows(text):
        for one in _expand(jid):
            _, requeues = states.get(one, ("", 0))
            states[one] = (state, requeues + (state == "REQUEUED"))
    return states


def _rows(text: str) -> list[tuple[str, str]]:
    rows = []
    for line in text.splitlines():
        jid, _, state = line.strip().partition("|")
        if jid and state:
            rows.append((jid, state.split()[0]))  # "CANCELLED by 0" -> CANCELLED
    return rows


def _expand(jid: str) -> list[str]:
    """123_[0-2,5%2] -> 123_0, 123_1, 123_2, 123_5; anything else as it is."""
    m = re.fullmatch(r"(\d+)_\[([^\]%]*)(%\d+)?\]", jid)
    if not m:
        return [jid]
    ids = []
    for part in m.group(2).split(","):
        lo, _, hi = part.partition("-")
        ids += [f"{m.group(1)}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return ids


def _trial_status(trial_dir: Path) -> str | None:
    summary = layout.read_summary(trial_dir)
    return summary.status if isinstance(summary, layout.Summary) else None


def cancel(results_dir: Path, job_id: str) -> list[str]:
    """scancel a recorded job, array or array task; returns the trial folders it concerns."""
    recs = records(results_dir)
    known = {r["job_id"]: r for r in recs} | {t["job_id"]: r for r in recs for t in r["tasks"]}
    if job_id not in known:
        hint = ", ".join(closest(job_id, known)) if known else "(none submitted)"
        raise UserError(f"unknown job '{job_id}' in {jobs_dir(results_dir)}; did you mean: {hint}?")
    res = subprocess.run(["scancel", job_id], capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise UserError(f"scancel {job_id} failed: {res.stderr.strip() or res.stdout.strip()}")
    rec = known[job_id]
    return [t["trial_dir"] for t in rec["tasks"] if job_id in (rec["job_id"], t["job_id"])]
