"""Fake results folders, written exactly as results/README.md says, for the scoring tests.

Every summary.json is built through `algobench.layout.validate_summary`, the writer's own check,
so a fixture the recorder could not write cannot reach the scoring tests. Other scoring test
modules (and benchmarks/bench_scoring.py) import these helpers; the tests at the bottom check
that what they write is what the loader reads.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import typer
from typer.testing import CliRunner

from algobench.errors import UserError
from algobench.layout import SCHEMA_VERSION, Contention, validate_summary

HARDWARE = {"cpu": "Test CPU", "cpu_count": 2, "gpu": None, "gpu_count": 0,
            "gpu_driver": None, "torch": "2.13.0"}
TARGET = {"metric": "val_loss", "value": 3.0, "mode": "min"}
IDLE = Contention(load_avg_max=0.4, cpu_count=2, run_queue_mean=0.9, run_queue_max=2,
                  other_gpu_processes=None, contended=False)
BUSY = Contention(load_avg_max=4.1, cpu_count=2, run_queue_mean=3.9, run_queue_max=6,
                  other_gpu_processes=None, contended=True)
SCHEMA_2_FIELDS = ("refined_time_to_target_s", "refined_steps_to_target", "refine_time_s",
                   "refine_evals", "contention", "overrides", "train_flops_per_step",
                   "achieved_flops_per_s", "mfu")


def summary_dict(*, workload: str = "gpt2", size: str = "small", submission: str = "adamw",
                 study: int | None = 0, trial: int | None = 0, time_s: float = 100.0,
                 steps_to_target: int | None = None, refined_time_s: float | None = None,
                 refined_steps: int | None = None, contended: bool = False,
                 overrides: dict[str, Any] | None = None, schema: int = SCHEMA_VERSION,
                 ruleset: str = "external", budget_s: float = 1000.0,
                 hardware_key: str = "cpu-test", framework: str = "torch",
                 trial_id: str | None = None, seed: int = 0) -> dict[str, Any]:
    """A summary the recorder could write; `time_s=inf` makes a trial that did not reach the target.

    Schema 2 (the default): the refined crossing defaults to the eval's (a crossing at the first
    snapshot), contention to an idle machine (`contended=True`: a busy one), no overrides.
    Schema 1: a summary from before the refined crossing, without any schema-2 field.
    """
    reached = math.isfinite(time_s)
    trial_id = trial_id or f"{workload}-{size}-{submission}-s{study}-t{trial}-{seed}"
    steps = (steps_to_target if steps_to_target is not None else int(time_s * 10)) if reached else None
    data = {
        "schema_version": schema, "trial_id": trial_id, "workload": workload, "size": size,
        "submission": submission, "framework": framework, "ruleset": ruleset,
        "study": study, "trial": trial, "seed": seed,
        "status": "reached" if reached else "not_reached",
        "reason": "target reached" if reached else "budget exhausted", "traceback": None,
        "target": dict(TARGET), "time_to_target_s": time_s if reached else None,
        "steps_to_target": steps,
        "budget_s": budget_s, "steps": 10_000, "submission_time_s": min(time_s, budget_s),
        "eval_time_s": 5.0, "wall_time_s": budget_s, "final_metrics": {"val_loss": 2.9},
        "hardware": dict(HARDWARE), "hardware_key": hardware_key, "hparams": {"lr": 1e-3},
    }
    if schema >= 2:
        refined_at = refined_time_s if refined_time_s is not None else time_s
        refined_step = refined_steps if refined_steps is not None else (
            None if steps is None else int(steps * refined_at / time_s) if time_s else steps)
        data.update({
            "refined_time_to_target_s": refined_at if reached else None,
            "refined_steps_to_target": refined_step if reached else None,
            "refine_time_s": 0.5 if reached else None, "refine_evals": 3 if reached else 0,
            "contention": (BUSY if contended else IDLE).model_dump(),
            "overrides": dict(overrides or {}),
        })
    summary = validate_summary(data)  # what the recorder checks before it writes
    exclude = set(SCHEMA_2_FIELDS) if schema < 2 else set()
    return summary.model_dump(mode="json", exclude=exclude)


def fake_evals(*, time_s: float, budget_s: float, n: int = 20) -> pd.DataFrame:
    """A loss falling linearly to the target (3.0) at `time_s`, or to 3.5 if never reached."""
    end = time_s if math.isfinite(time_s) else budget_s
    t = np.linspace(0.0, end, n)
    floor = TARGET["value"] if math.isfinite(time_s) else TARGET["value"] + 0.5
    loss = 6.0 - (6.0 - floor) * t / end
    return pd.DataFrame({"step": np.arange(n) * 10, "submission_time_s": t,
                         "eval_time_s": np.arange(n) * 0.5, "wall_time_s": t * 1.1,
                         "val_loss": loss, "test_loss": loss + 0.1})


def write_trial(root: Path, *, evals: pd.DataFrame | None = None, finished: bool = True,
                **fields: Any) -> Path:
    """One trial folder `<workload>/<size>/<submission>/<trial_name>/` under `root`."""
    summary = summary_dict(**fields)
    name = (f"run-20250101-000000-seed{summary['seed']}" if summary["study"] is None
            else f"study{summary['study']}-trial{summary['trial']}")
    folder = root / summary["workload"] / summary["size"] / summary["submission"] / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metadata.json").write_text(json.dumps({"trial_id": summary["trial_id"]}))
    if evals is None:
        evals = fake_evals(time_s=fields.get("time_s", 100.0), budget_s=summary["budget_s"])
    evals.to_parquet(folder / "evals.parquet", index=False)
    if finished:
        (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def write_study_grid(root: Path, times: dict[tuple[str, str], list[list[float]]],
                     **fields: Any) -> None:
    """times[(submission, workload)][study][trial] = time to target (s)."""
    for (submission, workload), studies in times.items():
        for k, trials in enumerate(studies):
            for i, time_s in enumerate(trials):
                write_trial(root, submission=submission, workload=workload, study=k, trial=i,
                            time_s=time_s, **fields)


def cli() -> typer.Typer:
    """The command line's app (its UserError handling is done by `invoke` below)."""
    from algobench.cli import app

    return app


def invoke(*args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr), printing `error: <message>` and exiting 2 on UserError."""
    result = CliRunner().invoke(cli(), [str(a) for a in args])
    if isinstance(result.exception, UserError):
        return 2, result.stdout, f"error: {result.exception}\n"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


# ---------------------------------------------------------------------------------------------


def test_written_trial_is_read_back(tmp_path):
    from scoring.load import load_results

    write_trial(tmp_path, submission="adamw", time_s=120.0, study=None, trial=None)
    write_trial(tmp_path, submission="sgd", time_s=math.inf)
    loaded = load_results([tmp_path])
    assert not loaded.skipped and not loaded.unfinished
    trials = loaded.trials.set_index("submission")
    assert trials.at["adamw", "time_to_target_s"] == 120.0
    assert trials.at["adamw", "study_key"].startswith("run:")
    assert trials.at["sgd", "time_to_target_s"] == math.inf
    assert len(loaded.evals) == 40 and set(loaded.evals["metric"]) == {"val_loss"}


def test_invoke_reports_user_errors_like_the_main_cli(tmp_path):
    code, _out, err = invoke("score", tmp_path / "missing")
    assert code == 2 and err.startswith("error: ") and "does not exist" in err
