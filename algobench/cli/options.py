"""What the commands share, declared once: consoles, output formats, name completion, and the
options `run` and `tune` both take (with the environment variables that set them)."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from algobench.errors import UserError
from algobench.tuning import SELF_BUDGET_FACTOR

# Wide enough that tables and paths are not cut at 80 columns when the output is a file or a pipe.
console = Console(width=None if os.isatty(1) else 160)
err_console = Console(stderr=True, width=None if os.isatty(2) else 160)

RESULTS_ENV, DATA_ENV = "ALGOBENCH_RESULTS_DIR", "ALGOBENCH_DATA_DIR"


def default_results() -> Path:
    """The results folder when none is given: $ALGOBENCH_RESULTS_DIR, else ./results."""
    return Path(os.environ.get(RESULTS_ENV) or "results")


def results_roots(given: list[Path] | None) -> list[Path]:
    """The results folders a reading command looks at: those given, else `default_results()`."""
    return list(given) if given else [default_results()]


class Format(str, Enum):
    table = "table"
    json = "json"


class Ruleset(str, Enum):
    external = "external"
    self = "self"


def workload_names(incomplete: str = "") -> list[str]:
    from workloads import WORKLOADS  # (shell completion: the registry's names, no workload imported)

    return [n for n in WORKLOADS.names() if n.startswith(incomplete)]


def submission_names(incomplete: str = "") -> list[str]:
    from algobench.submission import builtin_names  # (shell completion: file names only)

    return [n for n in builtin_names() if n.startswith(incomplete)]


def validated(model: Any, **fields: Any) -> Any:
    """Build a pydantic config; a validation error becomes one readable line naming the field."""
    try:
        return model(**fields)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "options")
        raise UserError(f"invalid {where}: {first['msg']}") from None


FormatOpt = Annotated[Format, typer.Option("--format", help="table or json.")]
WorkloadOpt = Annotated[str, typer.Option("--workload", "-w", help="Workload name, e.g. gpt2 (see: algobench list "
                                          "workloads).", autocompletion=workload_names)]
SubmissionOpt = Annotated[str, typer.Option("--submission", "-s", help="Submission name in submissions/ (e.g. adan) "
                                            "or a path to a submission file (./my_opt.py).",
                                            autocompletion=submission_names)]
SizeOpt = Annotated[str, typer.Option("--size", help="smoke (CPU, seconds), small (one GPU) or full (the benchmark).")]
FrameworkOpt = Annotated[str, typer.Option("--framework", help="torch, or jax (pip install -e '.\\[jax]'; "
                                           "see: algobench list workloads).")]
DataDirOpt = Annotated[Path, typer.Option("--data-dir", envvar=DATA_ENV,
                                          help=f"Where prepared data lives [env {DATA_ENV}].")]
ResultsDirOpt = Annotated[Path, typer.Option("--results-dir", envvar=RESULTS_ENV,
                                             help=f"Where trial folders go [env {RESULTS_ENV}].")]
ResultsArg = Annotated[list[Path] | None, typer.Argument(
    help=f"Results folders (default: ${RESULTS_ENV}, else results).", show_default=False)]
HparamsOpt = Annotated[Path | None, typer.Option(help="JSON or YAML file of hyperparameters overriding the "
                                                 "submission's defaults, e.g. --hparams hp.yaml.")]
RunRulesetOpt = Annotated[Ruleset | None, typer.Option(
    "--ruleset", show_default=False,
    help=f"external, or self: AlgoPerf's self-tuning ruleset (an AlgoPerf file gets hyperparameters=None; "
         f"the budget is {SELF_BUDGET_FACTOR:g}x). Default: what the file's place says (.../self_tuning/...), "
         "else external.")]
MaxStepsOpt = Annotated[int | None, typer.Option(help="Stop after this many steps, e.g. --max-steps 100 (recorded "
                                                 "as an override).")]
BatchSizeOpt = Annotated[int | None, typer.Option(help="Global batch size, overriding the submission's "
                                                  "get_batch_size and the size's default.")]
BudgetOpt = Annotated[float | None, typer.Option(help="Override the size's runtime budget (s of submission time).")]
EvalPeriodOpt = Annotated[float | None, typer.Option(help="Evaluate every this many s of submission time.")]
EvalEveryStepsOpt = Annotated[int | None, typer.Option(help="Evaluate every this many steps instead (reproducible).")]
LogEveryOpt = Annotated[int | None, typer.Option(help="Print the training loss every N steps (one host sync).")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
PrecisionOpt = Annotated[str, typer.Option(help="auto (bf16 autocast on GPU, fp32 on CPU), fp32 or bf16 "
                                           "(on GPU, fp32 also turns TF32 matmuls off).")]
CompileOpt = Annotated[str, typer.Option(help="torch.compile the model: auto (on GPU), on or off (JAX always jits).")]
WandbOpt = Annotated[bool, typer.Option("--wandb/--no-wandb", envvar="ALGOBENCH_WANDB",
                                        help="Log to Weights & Biases (offline into the trial folder when there is "
                                             "no API key or WANDB_MODE=offline) [env ALGOBENCH_WANDB=1].")]
WandbProjectOpt = Annotated[str | None, typer.Option(help="W&B project (env WANDB_PROJECT; default algobench).")]
WandbEntityOpt = Annotated[str | None, typer.Option(help="W&B entity (user or team) (env WANDB_ENTITY).")]
ClusterOpt = Annotated[str, typer.Option(envvar="ALGOBENCH_CLUSTER", help="SLURM cluster profile: "
                                         "slurm/profiles/NAME.yaml or a YAML file [env ALGOBENCH_CLUSTER].")]
SlurmOpt = Annotated[list[str] | None, typer.Option(help="Override a profile field, e.g. --slurm partition=gpu "
                                                    "--slurm time_limit_min=240.")]


def run_options(*, device: str, precision: str, compile: str, max_steps: int | None, batch_size: int | None,
                budget_s: float | None, eval_period_s: float | None, eval_every_steps: int | None,
                log_every_steps: int | None) -> dict[str, Any]:
    """The shared options as `TrialConfig.options` (algobench.specs.RunOptions)."""
    return dict(device=device, precision=precision, compile=compile, max_steps=max_steps, batch_size=batch_size,
                budget_s=budget_s, eval_period_s=eval_period_s, eval_period_steps=eval_every_steps,
                log_every_steps=log_every_steps)
