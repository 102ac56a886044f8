"""Tuning commands: `tune` (studies of quasi-random trials) and `runs` (the trials found).

`register(app)` adds them to the main CLI. Commands parse, call `tuning`/`study`, and print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from algobench import submission as submission_lib
from algobench import tuning
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
    LogEveryOpt,
    MaxStepsOpt,
    PrecisionOpt,
    ResultsArg,
    ResultsDirOpt,
    Ruleset,
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
    results_roots,
    run_options,
    usable_folder,
    validated,
)
from algobench.errors import UserError, unknown
from algobench.specs import DEFAULT_DATA_DIR, DEFAULT_RESULTS_DIR, SIZES, TrialConfig
from algobench.study import (
    InProcessExecutor,
    ProcessPoolExecutor,
    find_runs,
    offline_wandb_runs,
    plan_study,
    run_study,
    trial_dir,
)
from algobench.study_view import StudyView, format_hparams, runs_table
from algobench.tuning import DEFAULT_TRIALS, SELF_BUDGET_FACTOR
from workloads import WORKLOADS


def tune(
    workload: WorkloadOpt,
    submission: SubmissionOpt,
    size: SizeOpt = "smoke",
    framework: FrameworkOpt = "torch",
    search_space: Annotated[Path | None, typer.Option(
        help="Search space file, JSON or YAML, in AlgoPerf's tuning_search_space.json format "
             "(default: the submission's SEARCH_SPACE).")] = None,
    trials: Annotated[int | None, typer.Option(
        help=f"Trials per study (default {DEFAULT_TRIALS}; 1 under --ruleset self).")] = None,
    studies: Annotated[int, typer.Option(help="Independent studies (repetitions of the tuning).")] = 1,
    ruleset: Annotated[Ruleset, typer.Option(
        help="external: trials sample the search space; self: one trial per study with the "
             "submission's defaults and a longer budget.")] = Ruleset.external,
    self_budget_factor: Annotated[float, typer.Option(
        help="Budget multiplier of the self-tuning ruleset (AlgoPerf v0.6: 1.5).")] = SELF_BUDGET_FACTOR,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Trials run at once, each in its own process.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the study: the same seed gives the same trials.")] = 0,
    hparams: Annotated[Path | None, typer.Option(
        help="JSON or YAML file of fixed hyperparameters under the sampled ones.")] = None,
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
    wandb_group: Annotated[str | None, typer.Option(
        help="Prefix of the W&B group names (one group per study: PREFIX-study<k>).")] = None,
    executor: Annotated[str, typer.Option(
        help="local (here), slurm (one SLURM job array; --jobs N: at most N trials at once) or debug "
             "(the jobs' code path, in this process).")] = "local",
    cluster: ClusterOpt = "dev",
    slurm: SlurmOpt = None,
) -> None:
    """Tune SUBMISSION on WORKLOAD: STUDIES studies of TRIALS quasi-random (scrambled Halton) trials.

    Each trial is a normal run in RESULTS_DIR/<workload>/<size>/<submission>/study<k>-trial<i>/.
    Re-running the same command skips finished trials and redoes unfinished ones.

    Example: algobench tune --workload gpt2 --submission adan --trials 4 --studies 2 --jobs 2 --wandb
    """
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    sub = submission_lib.load(submission, framework=framework)
    fixed = submission_lib.load_hparams_file(hparams) if hparams else {}
    sub.hparams(fixed, source=str(hparams))
    space = None
    if search_space is not None:
        space = tuning.load_search_space(search_space)
    elif ruleset is Ruleset.external and sub.search_space:
        space = tuning.parse_search_space(sub.search_space, source=f"SEARCH_SPACE of {sub.path}")
    if space is not None:
        tuning.check_names(space, submission=sub.name, hparams=list(sub.defaults))
    WORKLOADS.get(workload).preset(size)
    base = validated(TrialConfig, workload=workload, size=size, submission=submission, framework=framework,
                     hparams=fixed, ruleset=ruleset.value, results_dir=results_dir, data_dir=data_dir,
                     options=run_options(device=device, precision=precision, compile=compile, max_steps=max_steps,
                                         batch_size=batch_size, budget_s=budget_s, eval_period_s=eval_period_s,
                                         eval_every_steps=eval_every_steps, log_every_steps=log_every_steps))
    n_trials = trials if trials is not None else (1 if ruleset is Ruleset.self else DEFAULT_TRIALS)
    configs = tuning.study_configs(base, space=space, trials=n_trials, studies=studies, seed=seed,
                                   base_budget_s=budget_s or WORKLOADS.get(workload).preset(size).budget_s,
                                   self_budget_factor=self_budget_factor)
    for config in configs:  # types of sampled values (a string where a number belongs, ...)
        sub.hparams(config.hparams, source=f"search space {space.source}" if space else "--hparams")
    usable_folder(base.data_dir, "--data-dir", writable=False)
    usable_folder(base.results_dir, "--results-dir")
    plan = plan_study(configs)
    names = {trial_dir(c).name: c for c in configs}
    _say_resume(plan)
    settings = None
    if wandb and plan.todo:
        from algobench import tracking  # (only a --wandb study enters the W&B module)

        settings = tracking.settings_from_env(project=wandb_project, entity=wandb_entity).model_copy(update={
            "group": wandb_group or f"{workload}-{size}-{sub.name}-{ruleset.value}-seed{seed}", "job_type": "tune"})
        mode = tracking.resolve_mode(settings)
        console.print(f"W&B: logging {mode} to project {settings.project}"
                      + (" (no API key or WANDB_MODE=offline: runs are written into each trial folder)"
                         if mode == "offline" else ""), highlight=False)
    if executor == "local":
        pool = ProcessPoolExecutor(jobs) if jobs > 1 else InProcessExecutor()
    else:  # one job array (algobench/slurm/submit.py; submitit and torch: only then)
        from algobench.slurm.submit import array_executor

        pool = array_executor(executor, cluster=cluster, overrides=slurm or [], parallelism=jobs if jobs > 1 else None)
    title = f"{workload} ({size}) / {sub.name}, {ruleset.value} ruleset, {studies} x {n_trials} trials"
    outcome = _run(plan, pool, settings, title, {n: c.hparams for n, c in names.items()},
                   tuned=space.names() if space else [])
    _report(outcome, tuned=space.names() if space else [])


def _say_resume(plan) -> None:
    if plan.finished:
        console.print(f"skipping {len(plan.finished)} finished trial(s): "
                      f"{', '.join(p.name for p in plan.finished)}", highlight=False)
    if plan.unfinished:
        console.print(f"redoing {len(plan.unfinished)} unfinished trial(s) (their folders are removed): "
                      f"{', '.join(p.name for p in plan.unfinished)}", highlight=False)
    if not plan.todo:
        console.print(f"all {len(plan.configs)} trials are finished: nothing to do", highlight=False)


def _run(plan, executor, settings, title, hparams, *, tuned):
    finished = [p.name for p in plan.finished]
    if not plan.todo:
        return run_study(plan, executor=executor)  # nothing to run: just the summaries
    try:
        with StudyView(console, title=title, hparams=hparams, finished=finished, tuned=tuned) as view:
            outcome = run_study(plan, executor=executor, tracking=settings, on_update=view)
        console.print(view.headline(), highlight=False)
    except KeyboardInterrupt:
        err_console.print("interrupted: trials without summary.json are unfinished; run the same command "
                          "again to resume")
        raise typer.Exit(130) from None
    return outcome


def _report(outcome, *, tuned: list[str]) -> None:
    by_study: dict[int, list] = {}
    for config, folder, summary in outcome.summaries:
        by_study.setdefault(config.study, []).append((folder, summary))
    table = Table(title="best trial per study")
    for col in ("study", "trials", "reached", "best trial", "time-to-target", "hyperparameters"):
        table.add_column(col, overflow="fold")
    for study, rows in sorted(by_study.items()):
        reached = [(f, s) for f, s in rows if s and s["status"] == "reached"]
        best = min(reached, key=lambda fs: fs[1]["time_to_target_s"], default=None)
        table.add_row(str(study), str(len(rows)), str(len(reached)), best[0].name if best else "-",
                      f"{best[1]['time_to_target_s']:.2f} s" if best else "inf",
                      format_hparams(best[1]["hparams"], tuned) if best else "-")
    console.print(table)
    runs = offline_wandb_runs([folder for _, folder, _ in outcome.summaries])
    if runs:
        common = runs[0].parents[2]
        console.print(f"W&B: {len(runs)} offline run(s) in the trial folders; upload them later with:\n"
                      f"  wandb sync {common}/*/wandb/offline-run-*", highlight=False, soft_wrap=True)
    if outcome.unfinished:
        err_console.print(f"{len(outcome.unfinished)} trial(s) did not finish "
                          f"({', '.join(p.name for p in outcome.unfinished)}; see worker.log in their folders); "
                          f"run the same command again to redo them", highlight=False)
        raise typer.Exit(1)


RUN_STATUSES = ("reached", "not_reached", "failed", "unfinished", "unreadable")


def runs(
    results: ResultsArg = None,
    workload: Annotated[str | None, typer.Option("--workload", "-w", help="Only this workload.")] = None,
    submission: Annotated[str | None, typer.Option("--submission", "-s", help="Only this submission.")] = None,
    size: Annotated[str | None, typer.Option(help="Only this size.")] = None,
    study: Annotated[int | None, typer.Option(help="Only this study.")] = None,
    status: Annotated[str | None, typer.Option(
        help="Only this status: reached, not_reached, failed or unfinished.")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """The trials found in RESULTS: status, time-to-target and hyperparameters.

    Example: algobench runs results --workload gpt2 --submission adan --study 1
    """
    rows = find_runs(results_roots(results))
    wanted = {"workload": workload, "submission": submission, "size": size, "study": study, "status": status}
    known = {"workload": WORKLOADS.names(), "size": SIZES, "status": RUN_STATUSES,
             "submission": sorted({r["submission"] for r in rows} | set(submission_lib.builtin_names()))}
    for key, choices in known.items():  # a typo names the nearest choice instead of "no trials found"
        if wanted[key] is not None and wanted[key] not in choices:
            raise unknown(key, wanted[key], choices)
    rows = [r for r in rows if all(v is None or r[k] == v for k, v in wanted.items())]
    if print_rows(rows, fmt):
        return
    if not rows:
        console.print("no trials found" + (" matching the filters" if any(wanted.values()) else ""))
        return
    console.print(runs_table(rows, title=f"{len(rows)} trial(s)"))
