"""`run` (one trial), `list workloads|submissions` and `data prepare`: parse, then call the library."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from algobench import submission as submission_lib
from algobench.cli.options import (
    BatchSizeOpt,
    BudgetOpt,
    ClusterOpt,
    CompileOpt,
    DataDirOpt,
    DeviceOpt,
    EvalEveryStepsOpt,
    EvalPeriodOpt,
    Format,
    FormatOpt,
    FrameworkOpt,
    HparamsOpt,
    LogEveryOpt,
    MaxStepsOpt,
    PrecisionOpt,
    ResultsDirOpt,
    Ruleset,
    RunRulesetOpt,
    SizeOpt,
    SlurmOpt,
    SubmissionOpt,
    WandbEntityOpt,
    WandbOpt,
    WandbProjectOpt,
    WorkloadOpt,
    console,
    err_console,
    print_rows,
    run_options,
    usable_folder,
    validated,
    workload_names,
)
from algobench.cli.slurm import submit_run
from algobench.display import TrialDisplay, outcome_panel
from algobench.errors import UserError
from algobench.flops import workload_costs
from algobench.specs import DEFAULT_DATA_DIR, DEFAULT_RESULTS_DIR, TrialConfig
from algobench.tuning import self_budget
from workloads import WORKLOADS


def run(
    workload: WorkloadOpt,
    submission: SubmissionOpt,
    size: SizeOpt = "smoke",
    framework: FrameworkOpt = "torch",
    hparams: HparamsOpt = None,
    ruleset: RunRulesetOpt = None,
    seed: Annotated[int, typer.Option(help="Seed for model init, data order and the submission's rng.")] = 0,
    max_steps: MaxStepsOpt = None,
    batch_size: BatchSizeOpt = None,
    budget_s: BudgetOpt = None,
    eval_period_s: EvalPeriodOpt = None,
    eval_every_steps: EvalEveryStepsOpt = None,
    log_every_steps: LogEveryOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    compile: CompileOpt = "auto",
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    results_dir: ResultsDirOpt = DEFAULT_RESULTS_DIR,
    wandb: WandbOpt = False,
    wandb_project: WandbProjectOpt = None,
    wandb_entity: WandbEntityOpt = None,
    executor: Annotated[str, typer.Option(help="local (here), slurm (a SLURM job, see --cluster) or debug "
                                          "(the job's code path, in this process).")] = "local",
    cluster: ClusterOpt = "dev",
    slurm: SlurmOpt = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="--executor slurm: block until the job ends "
                                       "and show the outcome.")] = False,
) -> None:
    """Run one trial: train WORKLOAD with SUBMISSION until the validation target, the budget or a failure.

    Example: algobench run --workload gpt2 --submission adan --size smoke --seed 1
    """
    from algobench.trial import TrialInterrupted, execute  # (torch: loaded when a trial runs, not for --help)

    overrides = submission_lib.load_hparams_file(hparams) if hparams else {}
    if ruleset is None:
        ruleset = Ruleset(submission_lib.ruleset_of(submission_lib.resolve(submission)[1]) or "external")
    if ruleset is Ruleset.self:  # AlgoPerf's self-tuning budget: a multiple of the external one
        budget_s = self_budget(budget_s or WORKLOADS.get(workload).preset(size).budget_s)
    config = validated(TrialConfig, workload=workload, size=size, submission=submission, framework=framework,
                       hparams=overrides, seed=seed, ruleset=ruleset.value, results_dir=results_dir,
                       data_dir=data_dir,
                       options=run_options(device=device, precision=precision, compile=compile,
                                           max_steps=max_steps, batch_size=batch_size, budget_s=budget_s,
                                           eval_period_s=eval_period_s, eval_every_steps=eval_every_steps,
                                           log_every_steps=log_every_steps))
    if overrides:  # name the file in errors about its fields
        submission_lib.load(submission, framework=framework).hparams(overrides, source=str(hparams))
    usable_folder(config.data_dir, "--data-dir", writable=False)
    usable_folder(config.results_dir, "--results-dir")
    if executor != "local":
        submit_run(config, executor=executor, cluster=cluster, overrides=slurm or [], wait=wait)
        return
    display = TrialDisplay(console)
    consumers: list = [display]
    if wandb:  # (a --no-wandb run never enters the W&B module)
        from algobench.tracking import WandbTracker, settings_from_env

        consumers.append(WandbTracker(settings_from_env(project=wandb_project, entity=wandb_entity),
                                      notify=lambda message: console.print(message, highlight=False, markup=False)))
    try:
        summary, trial_dir = execute(config, consumers)
    except KeyboardInterrupt as err:
        err_console.print(str(err) if isinstance(err, TrialInterrupted) else "interrupted", highlight=False,
                          markup=False, soft_wrap=True)
        raise typer.Exit(130) from None
    if summary is not None:  # None on the other ranks of a torchrun
        console.print(outcome_panel(summary, trial_dir))


def list_workloads(fmt: FormatOpt = Format.table) -> None:
    """Every workload and size with its target, budget and eval period. Example: algobench list workloads --format json"""
    rows = []
    for name in WORKLOADS.names():
        spec = WORKLOADS.get(name)
        costs = workload_costs(spec)
        for size, p in spec.presets.items():
            rows.append({"workload": name, "size": size, "target": p.target.model_dump(), "budget_s": p.budget_s,
                         "n_params": costs[size]["n_params"],
                         "train_flops_per_example": costs[size]["train_flops_per_example"],
                         "flops_example": costs[size]["example"],
                         "eval_period_s": p.eval_period_s, "eval_period_steps": p.eval_period_steps,
                         "step_hint": p.step_hint, "batch_size": p.batch_size, "frameworks": list(spec.frameworks),
                         "algoperf_name": spec.algoperf_name, "how_target_was_set": p.how_target_was_set,
                         "description": spec.description})
    if print_rows(rows, fmt):
        return
    table = Table(title="workloads")
    for col in ("workload", "size", "target", "budget", "eval every", "step hint", "batch", "params",
                "train FLOPs/example", "frameworks"):
        table.add_column(col, overflow="fold")
    for r in rows:
        t = r["target"]
        every = f"{r['eval_period_steps']} steps" if r["eval_period_steps"] else f"{r['eval_period_s']:g} s"
        table.add_row(r["workload"], r["size"], f"{t['metric']} {'<=' if t['mode'] == 'min' else '>='} {t['value']:g}",
                      f"{r['budget_s']:g} s", every, str(r["step_hint"]), str(r["batch_size"]),
                      "?" if r["n_params"] is None else f"{r['n_params'] / 1e6:.2f}M",
                      "?" if r["train_flops_per_example"] is None else
                      f"{r['train_flops_per_example']:.3g} / {r['flops_example']}",
                      ", ".join(r["frameworks"]))
    console.print(table)


def fidelity(module) -> dict:
    """What a submission says of its authors' code (README: Fidelity to the authors' code)."""
    return {"reference": getattr(module, "REFERENCE", ""), "equal_under": getattr(module, "EQUAL_UNDER", ""),
            "reference_test": getattr(module, "REFERENCE_TEST", ""),
            "differences": list(getattr(module, "DIFFERENCES", []))}


def list_submissions(fmt: FormatOpt = Format.table) -> None:
    """Every built-in submission: form, paper, optimizer state in bytes per parameter (measured on the
    GPT-2 smoke model) and default hyperparameters. Example: algobench list submissions"""
    from algobench.library import cached_state_bytes_per_param  # (torch: builds the GPT-2 smoke model)

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
                         "hparams": sub.defaults, "search_space": sub.search_space, "path": str(sub.path),
                         **fidelity(sub.module)})
    if print_rows(rows, fmt):
        return
    table = Table(title="submissions (state: optimizer state in bytes per parameter, GPT-2 smoke)")
    for col in ("submission", "form", "frameworks", "paper", "state", "defaults"):
        table.add_column(col, overflow="fold", justify="right" if col == "state" else "left")
    for r in rows:
        state = "?" if r["state_bytes_per_param"] is None else f"{r['state_bytes_per_param']:.2f}"
        table.add_row(r["submission"], r["form"], ", ".join(r["frameworks"]), r["paper"], state,
                      "\n".join(f"{k}={v}" for k, v in r["hparams"].items()))  # one per line: never split
    console.print(table)


def data_prepare(
    workload: Annotated[str, typer.Argument(help="Workload name, e.g. gpt2.", autocompletion=workload_names)],
    size: SizeOpt = "smoke",
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    source: Annotated[Path | None, typer.Option(help="Local text: a file or folder of .txt/.jsonl/.parquet "
                                                "documents, instead of the default download.")] = None,
    shards: Annotated[Path | None, typer.Option(help="A folder of existing token shards (e.g. modded-nanogpt's "
                                                "fineweb_train_*.bin): checked and linked.")] = None,
) -> None:
    """Prepare WORKLOAD's data for SIZE. Example: algobench data prepare gpt2 --size smoke"""
    spec = WORKLOADS.get(workload)
    spec.preset(size)
    options = {k: v for k, v in {"source": source, "shards": shards}.items() if v is not None}
    for flag, path in options.items():
        if not path.exists():
            raise UserError(f"--{flag} {path}: no such file or folder")
    usable_folder(data_dir, "--data-dir")
    try:
        with console.status(f"preparing {workload} ({size}) in {data_dir}"):
            out = spec.data.prepare(size, data_dir, **options)
    except Exception as err:
        if _network_error(err):
            raise UserError(f"data prepare {workload} --size {size}: the download failed ({type(err).__name__}: "
                            f"{err}); offline, give local data with --source (or --shards for gpt2)") from None
        if isinstance(err, OSError):
            raise UserError(f"data prepare {workload} --size {size}: {err}") from None
        raise
    console.print(f"prepared {workload} ({size}): {out}")


def _network_error(err: BaseException) -> bool:
    """A download that could not reach its server (no network, a proxy, a dead mirror)."""
    http_libraries = {"httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3", "huggingface_hub"}
    return isinstance(err, (ConnectionError, TimeoutError)) or type(err).__module__.split(".")[0] in http_libraries
