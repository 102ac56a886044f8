"""The `algobench` command line. Commands parse their options and call the library."""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from algobench.errors import UserError

app = typer.Typer(
    help="Benchmark neural-network training algorithms: time to a validation target, scored by "
         "performance profiles.\n\nExample: algobench run --workload gpt2 --submission adan",
    no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode="rich")
list_app = typer.Typer(help="List what is registered: algobench list workloads", no_args_is_help=True)
data_app = typer.Typer(help="Prepare datasets: algobench data prepare gpt2 --size smoke", no_args_is_help=True)
app.add_typer(list_app, name="list")
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)

DEFAULT_DATA = Path(os.environ.get("ALGOBENCH_DATA_DIR", "data"))
DEFAULT_RESULTS = Path(os.environ.get("ALGOBENCH_RESULTS_DIR", "results"))


class Format(str, Enum):
    table = "table"
    json = "json"


def _workload_names(incomplete: str = "") -> list[str]:
    import workloads  # noqa: F401
    from algobench.workload import WORKLOADS

    return [n for n in WORKLOADS.names() if n.startswith(incomplete)]


def _submission_names(incomplete: str = "") -> list[str]:
    from algobench.submission import builtin_names

    return [n for n in builtin_names() if n.startswith(incomplete)]


WorkloadOpt = Annotated[str, typer.Option("--workload", "-w", help="Workload name, e.g. gpt2 (see: algobench list workloads).",
                                          autocompletion=_workload_names)]
SubmissionOpt = Annotated[str, typer.Option("--submission", "-s", help="Submission name in submissions/ (e.g. adan) "
                                            "or a path to a submission file (./my_opt.py).",
                                            autocompletion=_submission_names)]
SizeOpt = Annotated[str, typer.Option("--size", help="smoke (CPU, seconds), small (one GPU) or full (the benchmark).")]
FrameworkOpt = Annotated[str, typer.Option("--framework", help="torch, or jax (pip install -e '.\\[jax]'; "
                                           "see: algobench list workloads).")]
DataDirOpt = Annotated[Path, typer.Option("--data-dir", help="Where prepared data lives (env ALGOBENCH_DATA_DIR).")]
ResultsDirOpt = Annotated[Path, typer.Option("--results-dir", help="Where trial folders go (env ALGOBENCH_RESULTS_DIR).")]
WandbOpt = Annotated[bool, typer.Option("--wandb/--no-wandb", envvar="ALGOBENCH_WANDB",
                                        help="Log to Weights & Biases (offline into the trial folder when there is "
                                             "no API key or WANDB_MODE=offline) [env ALGOBENCH_WANDB=1].")]
WandbProjectOpt = Annotated[str | None, typer.Option(help="W&B project (env WANDB_PROJECT; default algobench).")]
WandbEntityOpt = Annotated[str | None, typer.Option(help="W&B entity (user or team) (env WANDB_ENTITY).")]


@app.command()
def run(
    workload: WorkloadOpt,
    submission: SubmissionOpt,
    size: SizeOpt = "smoke",
    framework: FrameworkOpt = "torch",
    hparams: Annotated[Path | None, typer.Option(help="JSON or YAML file of hyperparameters overriding the "
                                                  "submission's defaults, e.g. --hparams hp.yaml.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for model init, data order and the submission's rng.")] = 0,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps, e.g. --max-steps 100.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Global batch size, overriding the submission's "
                                                   "get_batch_size and the size's default.")] = None,
    budget_s: Annotated[float | None, typer.Option(help="Override the size's runtime budget (s of submission time).")] = None,
    eval_period_s: Annotated[float | None, typer.Option(help="Evaluate every this many s of submission time.")] = None,
    eval_every_steps: Annotated[int | None, typer.Option(help="Evaluate every this many steps instead (reproducible).")] = None,
    log_every_steps: Annotated[int | None, typer.Option(help="Print the training loss every N steps (one host sync).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto (bf16 autocast on GPU, fp32 on CPU), fp32 or bf16.")] = "auto",
    compile: Annotated[str, typer.Option(help="torch.compile the model: auto (on GPU), on or off (JAX always jits).")] = "auto",
    data_dir: DataDirOpt = DEFAULT_DATA,
    results_dir: ResultsDirOpt = DEFAULT_RESULTS,
    wandb: WandbOpt = False,
    wandb_project: WandbProjectOpt = None,
    wandb_entity: WandbEntityOpt = None,
    executor: Annotated[str, typer.Option(help="local (here), slurm (a SLURM job, see --cluster) or debug "
                                          "(the job's code path, in this process).")] = "local",
    cluster: Annotated[str, typer.Option(envvar="ALGOBENCH_CLUSTER", help="SLURM cluster profile: "
                                         "slurm/profiles/NAME.yaml or a YAML file.")] = "dev",
    slurm: Annotated[list[str] | None, typer.Option(help="Override a profile field, e.g. --slurm partition=gpu "
                                                    "--slurm time_limit_min=240.")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="--executor slurm: block until the job ends "
                                       "and show the outcome.")] = False,
) -> None:
    """Run one trial: train WORKLOAD with SUBMISSION until the validation target, the budget or a failure.

    Example: algobench run --workload gpt2 --submission adan --size smoke --seed 1
    """
    from algobench import submission as submission_lib
    from algobench.display import TrialDisplay, outcome_panel
    from algobench.specs import RunOptions, TrialConfig
    from algobench.trial import execute

    overrides = submission_lib.load_hparams_file(hparams) if hparams else {}
    config = _validated(TrialConfig, workload=workload, size=size, submission=submission, framework=framework,
                        hparams=overrides, seed=seed, results_dir=results_dir, data_dir=data_dir,
                        options=dict(device=device, precision=precision, compile=compile, max_steps=max_steps,
                                     batch_size=batch_size,
                                     budget_s=budget_s, eval_period_s=eval_period_s,
                                     eval_period_steps=eval_every_steps, log_every_steps=log_every_steps))
    if overrides:  # name the file in errors about its fields
        submission_lib.load(submission, framework=framework).hparams(overrides, source=str(hparams))
    if executor != "local":
        from algobench.cli_slurm import submit_run

        submit_run(config, executor=executor, cluster=cluster, overrides=slurm or [], wait=wait)
        return
    display = TrialDisplay(console)
    from algobench.tracking import settings_from_env, tracked_execute

    tracking = settings_from_env(project=wandb_project, entity=wandb_entity) if wandb else None
    try:
        summary, trial_dir = tracked_execute(config, tracking, on_event=display,
                                             notify=lambda message: console.print(message, highlight=False,
                                                                                  markup=False))
    except KeyboardInterrupt:
        display.close()
        err_console.print("interrupted: the trial folder has no summary.json (unfinished)")
        raise typer.Exit(130) from None
    finally:
        display.close()
    if summary is not None:  # None on the other ranks of a torchrun
        console.print(outcome_panel(summary, trial_dir))


@list_app.command("workloads")
def list_workloads(fmt: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table) -> None:
    """Every workload and size with its target, budget and eval period. Example: algobench list workloads --format json"""
    import workloads  # noqa: F401
    from algobench.workload import WORKLOADS

    rows = []
    for name in WORKLOADS.names():
        spec = WORKLOADS.get(name)
        for size, p in spec.presets.items():
            rows.append({"workload": name, "size": size, "target": p.target.model_dump(), "budget_s": p.budget_s,
                         "eval_period_s": p.eval_period_s, "eval_period_steps": p.eval_period_steps,
                         "step_hint": p.step_hint, "batch_size": p.batch_size, "frameworks": list(spec.frameworks),
                         "algoperf_name": spec.algoperf_name, "how_target_was_set": p.how_target_was_set,
                         "description": spec.description})
    if fmt is Format.json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="workloads")
    for col in ("workload", "size", "target", "budget", "eval every", "step hint", "batch", "frameworks"):
        table.add_column(col)
    for r in rows:
        t = r["target"]
        every = f"{r['eval_period_steps']} steps" if r["eval_period_steps"] else f"{r['eval_period_s']:g} s"
        table.add_row(r["workload"], r["size"], f"{t['metric']} {'<=' if t['mode'] == 'min' else '>='} {t['value']:g}",
                      f"{r['budget_s']:g} s", every, str(r["step_hint"]), str(r["batch_size"]),
                      ", ".join(r["frameworks"]))
    console.print(table)


@list_app.command("submissions")
def list_submissions(fmt: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table) -> None:
    """Every built-in submission: form, paper, optimizer state in bytes per parameter (measured on the
    GPT-2 smoke model) and default hyperparameters. Example: algobench list submissions"""
    from algobench import submission as submission_lib
    from algobench.library import cached_state_bytes_per_param

    rows = []
    with err_console.status("measuring optimizer state on the GPT-2 smoke model"):
        for name in submission_lib.builtin_names():
            sub = submission_lib.load(name)
            try:
                state_bytes = round(cached_state_bytes_per_param(sub), 3)
            except Exception as err:  # a broken submission still gets listed
                err_console.print(f"warning: {name}: state not measured: {type(err).__name__}: {err}",
                                  markup=False, highlight=False)
                state_bytes = None
            rows.append({"submission": name, "form": sub.form, "frameworks": list(sub.frameworks), "paper": sub.paper,
                         "state_bytes_per_param": state_bytes,
                         "hparams": sub.defaults, "search_space": sub.search_space, "path": str(sub.path)})
    if fmt is Format.json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="submissions (state: optimizer state in bytes per parameter, GPT-2 smoke)")
    for col in ("submission", "form", "frameworks", "paper", "state", "defaults"):
        table.add_column(col, overflow="fold", justify="right" if col == "state" else "left")
    for r in rows:
        state = "?" if r["state_bytes_per_param"] is None else f"{r['state_bytes_per_param']:.2f}"
        table.add_row(r["submission"], r["form"], ", ".join(r["frameworks"]), r["paper"], state,
                      ", ".join(f"{k}={v}" for k, v in r["hparams"].items()))
    console.print(table)


@data_app.command("prepare")
def data_prepare(
    workload: Annotated[str, typer.Argument(help="Workload name, e.g. gpt2.", autocompletion=_workload_names)],
    size: SizeOpt = "smoke",
    data_dir: DataDirOpt = DEFAULT_DATA,
    source: Annotated[Path | None, typer.Option(help="Local text: a file or folder of .txt/.jsonl/.parquet "
                                                "documents, instead of the default download.")] = None,
    shards: Annotated[Path | None, typer.Option(help="A folder of existing token shards (e.g. modded-nanogpt's "
                                                "fineweb_train_*.bin): checked and linked.")] = None,
) -> None:
    """Prepare WORKLOAD's data for SIZE. Example: algobench data prepare gpt2 --size smoke"""
    import workloads  # noqa: F401
    from algobench.workload import WORKLOADS

    spec = WORKLOADS.get(workload)
    if size not in spec.presets:
        raise UserError(f"workload {workload} has no size '{size}'; sizes: {', '.join(spec.presets)}")
    options = {k: v for k, v in {"source": source, "shards": shards}.items() if v is not None}
    with console.status(f"preparing {workload} ({size}) in {data_dir}"):
        out = spec.data.prepare(size, data_dir, **options)
    console.print(f"prepared {workload} ({size}): {out}")


def _validated(model, **fields):
    """Build a pydantic config; a validation error becomes one readable line naming the field."""
    try:
        return model(**fields)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "options")
        raise UserError(f"invalid {where}: {first['msg']}") from None


def _register_optional_commands() -> None:
    """Commands from other modules (scoring, tuning, ...) that may not exist yet in a checkout."""
    import importlib

    for module in ("algobench.cli_scoring", "algobench.cli_tune", "algobench.cli_slurm", "algobench.cli_library"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
            continue
        mod.register(app)


_register_optional_commands()


def main() -> None:
    try:
        app()
    except UserError as err:
        err_console.print(f"[red]error:[/] {err}", highlight=False)
        sys.exit(err.exit_code)
