"""What the commands share, declared once: consoles, output formats, name completion, and the
options `run` and `tune` both take (with the environment variables that set them)."""

from __future__ import annotations

import csv
import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from algobench.errors import UserError
from algobench.files import atomic_write
from algobench.hparam_ranges import Range
from algobench.specs import DEFAULT_RESULTS_DIR
from algobench.tuning import SELF_BUDGET_FACTOR

# Wide enough that tables and paths are not cut at 80 columns when the output is a file or a pipe.
console = Console(width=None if os.isatty(1) else 160)
err_console = Console(stderr=True, width=None if os.isatty(2) else 160)

RESULTS_ENV, DATA_ENV = "ALGOBENCH_RESULTS_DIR", "ALGOBENCH_DATA_DIR"


def default_results() -> Path:
    """The results folder when none is given: $ALGOBENCH_RESULTS_DIR, else ./results."""
    return Path(os.environ.get(RESULTS_ENV) or DEFAULT_RESULTS_DIR)


def results_roots(given: list[Path] | None) -> list[Path]:
    """The results folders a reading command looks at: those given, else `default_results()`."""
    return list(given) if given else [default_results()]


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


def print_rows(rows: list[dict[str, Any]], fmt: Format) -> bool:
    """Print `rows` as JSON or CSV (nested values as JSON text in a cell) and return True; False
    for `table`, which each command draws itself."""
    if fmt is Format.json:
        print(json.dumps(rows, indent=2))
        return True
    if fmt is Format.csv:
        columns = list(dict.fromkeys(k for r in rows for k in r))
        out = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
        out.writeheader()
        for r in rows:
            out.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()})
        return True
    return False


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
        field = str(first["loc"][-1]) if first["loc"] else "config"
        flag = "--" + FLAGS.get(field, field).replace("_", "-")
        raise UserError(f"invalid {flag} {first.get('input')!r}: {first['msg']}") from None


FLAGS = {"eval_period_steps": "eval_every_steps"}  # config field -> option name, where they differ


def usable_folder(path: Path, flag: str, *, writable: bool = True) -> Path:
    """A folder the command uses, created if missing: a UserError unless that works (and, if
    `writable`, unless it can be written to)."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path}: is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{flag} {path}: cannot create it ({err.strerror})") from None
    if writable and not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: not writable")
    return path


def write_output(path: Path, data: bytes, flag: str = "--out") -> None:
    """Write a file the user asked for (atomically); a UserError naming it when that fails."""
    try:
        atomic_write(path, data)
    except OSError as err:
        raise UserError(f"{flag} {path}: cannot write it ({err.strerror or err})") from None


def check_ranges(values: dict[str, Any], ranges: dict[str, Range]) -> None:
    """Each option's value inside its range, else a UserError naming the option."""
    for name, value in values.items():
        if not ranges[name].contains(value):
            raise UserError(f"--{name.replace('_', '-')} must be {ranges[name]}, got {value!r}")


def _not_empty(flag: str):
    def parse(value: str) -> Path:
        if not str(value).strip():
            raise UserError(f"{flag} is empty: give a folder (an empty value would write into the current one)")
        return Path(value)
    return parse


FormatOpt = Annotated[Format, typer.Option("--format", help="table, json or csv (nothing is cut).")]
WorkloadOpt = Annotated[str, typer.Option("--workload", "-w", help="Workload name, e.g. gpt2 (see: algobench list "
                                          "workloads).", autocompletion=workload_names)]
SubmissionOpt = Annotated[str, typer.Option("--submission", "-s", help="Submission name in submissions/ (e.g. adan) "
                                            "or a path to a submission file (./my_opt.py).",
                                            autocompletion=submission_names)]
SizeOpt = Annotated[str, typer.Option("--size", help="smoke (CPU, seconds), small (one GPU) or full (the benchmark).")]
FrameworkOpt = Annotated[str, typer.Option("--framework", help="torch, or jax (pip install -e '.[jax]'; "
                                           "see: algobench list workloads).")]
DataDirOpt = Annotated[Path, typer.Option("--data-dir", envvar=DATA_ENV, parser=_not_empty("--data-dir"),
                                          help=f"Where prepared data lives [env {DATA_ENV}].")]
ResultsDirOpt = Annotated[Path, typer.Option("--results-dir", envvar=RESULTS_ENV, parser=_not_empty("--results-dir"),
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
