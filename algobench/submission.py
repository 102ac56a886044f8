"""Submissions: finding, loading and validating them, and the simple form built on the full one.

A submission is a module, found by name in `submissions/` (`adan.py` or `adan/submission.py`)
or by path (`--submission ./my_opt.py`). It comes in one of two forms:

1. simple: `HPARAMS` (defaults), `SEARCH_SPACE` (AlgoPerf's tuning_search_space format),
   `make_optimizer(*, model, hparams, workload) -> torch.optim.Optimizer` and
   `lr_schedule(*, step, step_hint, hparams) -> float` (the learning rate at `step`).
2. full, AlgoPerf-style (keyword-only arguments): `init_optimizer_state(*, workload, model_params, model_state,
   hyperparameters, rng)` and `update_params(*, workload, current_param_container,
   current_params_types, model_state, hyperparameters, batch, loss_type, optimizer_state,
   eval_results, global_step, rng, train_state)` returning `(optimizer_state, params,
   model_state)` (optionally a 4th element: the step's loss tensor, for logging); optional
   `data_selection`, `prepare_for_eval` and `get_batch_size`.

3. algoperf: an AlgoPerf PyTorch submission file as it is (it imports `algoperf` or
   `algorithmic_efficiency`, or its functions take positional arguments); see algobench/algoperf.
   Its `HPARAMS` may be a dict, a namedtuple or a SimpleNamespace; under the self-tuning ruleset
   it gets `hyperparameters=None`; a file under a `submissions/` folder may import its helpers as
   `submissions.<ruleset>.<name>.<module>` (AlgoPerf's repository layout).
4. optax (for `--framework jax`): `HPARAMS`, `SEARCH_SPACE`, `lr_schedule` as in the simple form
   and `make_optax(*, learning_rate, hparams, workload) -> optax.GradientTransformation`. A
   module may hold both `make_optimizer` and `make_optax`: one submission, two frameworks.

The runner only knows the full form; algobench/forms/ (simple, optax) and
algobench/algoperf/adapter.py turn the others into it.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import json
import math
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import yaml

from algobench import algoperf
from algobench import hparam_ranges
from algobench.errors import UserError, closest, unknown
from algobench.events import SubmissionInfo
from algobench.forms import base

FULL_REQUIRED = ("init_optimizer_state", "update_params")
SIMPLE_REQUIRED = ("make_optimizer", "lr_schedule")
OPTAX_REQUIRED = ("make_optax", "lr_schedule")


def make_hparams(values: Mapping[str, Any]) -> tuple:
    """Hyperparameters as a namedtuple, AlgoPerf's form: `hparams.learning_rate`."""
    Hyperparameters = collections.namedtuple("Hyperparameters", sorted(values))
    return Hyperparameters(**values)


# AlgoPerf's model hyperparameters: accepted from any search space or --hparams file and ignored
# (algobench's models have no dropout), so that AlgoPerf's files work with every submission.
MODEL_HPARAMS = ("dropout_rate", "aux_dropout_rate")


@dataclass(frozen=True)
class Submission:
    name: str
    path: Path
    form: Literal["simple", "full", "algoperf", "optax"]
    module: ModuleType
    defaults: dict[str, Any]
    search_space: dict[str, Any]
    paper: str
    init_optimizer_state: Callable[..., Any]
    update_params: Callable[..., Any]
    data_selection: Callable[..., Any]
    prepare_for_eval: Callable[..., Any] | None = None
    get_batch_size: Callable[[Any], int | None] | None = None  # (the workload) -> batch size, or None
    sha256: str = field(default="")
    frameworks: tuple[str, ...] = ("torch",)  # the frameworks this module has a form for

    @property
    def info(self) -> SubmissionInfo:
        return SubmissionInfo(name=self.name, path=self.path, form=self.form, sha256=self.sha256)

    def contract_hparams(self, values: Mapping[str, Any], *, ruleset: str) -> Any:
        """The `hyperparameters` the submission's functions get: a namedtuple of `values`, or, for
        an AlgoPerf file under the self-tuning ruleset, None (as AlgoPerf passes)."""
        if ruleset == "self" and self.form == "algoperf":
            if dict(values) != self.defaults:
                raise UserError(f"submission {self.path}: a self-tuning AlgoPerf file gets hyperparameters=None, "
                                f"so --hparams cannot reach it; drop --hparams or use --ruleset external")
            return None
        return make_hparams(values)

    def hparams(self, overrides: Mapping[str, Any] | None = None, *, source: str = "--hparams") -> dict:
        """The defaults with `overrides` applied; unknown names fail with the nearest valid ones."""
        values = dict(self.defaults)
        for key, value in (overrides or {}).items():
            if self.defaults and key not in self.defaults and key not in MODEL_HPARAMS:
                hint = ", ".join(closest(key, self.defaults))
                raise UserError(f"{source}: '{key}' is not a hyperparameter of {self.name}; "
                                f"did you mean: {hint}?")
            default = self.defaults.get(key)
            if isinstance(default, (int, float)) and not isinstance(default, bool):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise UserError(f"{source}: '{key}' must be a number, got {value!r}")
            values[key] = value
        hparam_ranges.check(dict(overrides or {}), source=source, extra=getattr(self.module, "HPARAM_RANGES", None))
        return values


def submissions_dir() -> Path:
    """The built-in submissions' folder (found without importing the package)."""
    return Path(importlib.util.find_spec("submissions").origin).parent


def builtin_names() -> list[str]:
    root = submissions_dir()
    names = [p.stem for p in root.glob("*.py") if not p.name.startswith("_")]
    names += [p.parent.name for p in root.glob("*/submission.py") if not p.parent.name.startswith("_")]
    return sorted(names)


def resolve(name_or_path: str) -> tuple[str, Path]:
    """(name, file) for a registry name or a path to a submission file."""
    if name_or_path.endswith(".py") or "/" in name_or_path:
        path = Path(name_or_path).expanduser()
        if path.is_dir():
            if not (path / "submission.py").is_file():
                raise UserError(f"submission {name_or_path}: a folder without submission.py")
            path = path / "submission.py"
        if not path.is_file():
            raise UserError(f"submission file not found: {name_or_path}")
        if path.suffix != ".py":
            raise UserError(f"submission {name_or_path}: not a Python file (a submission is a .py file)")
        return (path.parent.name if path.name == "submission.py" else path.stem), path.resolve()
    root = submissions_dir()
    for path in (root / f"{name_or_path}.py", root / name_or_path / "submission.py"):
        if path.is_file():
            return name_or_path, path
    if Path(name_or_path).is_dir():
        raise UserError(f"submission {name_or_path}: a folder, not a built-in name; give ./{name_or_path} "
                        f"(a folder holding submission.py) or a .py file")
    raise unknown("submission", name_or_path, builtin_names())


def ruleset_of(path: Path) -> Literal["external", "self"] | None:
    """The ruleset a file's place says, as in AlgoPerf's repositories
    (`submissions/self_tuning/<name>/submission.py`); None when it says none."""
    parts = set(Path(path).parts)
    return "self" if "self_tuning" in parts else "external" if "external_tuning" in parts else None


def load(name_or_path: str, framework: str = "torch") -> Submission:
    """The submission's form for `framework` (torch: simple, full or algoperf; jax: optax)."""
    # (torch comes with the forms: imported when a submission is loaded, so that finding one,
    # listing results and `algobench runs` start without it)
    from algobench.algoperf import adapter
    from algobench.forms import simple

    name, path = resolve(name_or_path)
    source = path.read_text()
    if algoperf.mentions_algoperf(source):
        algoperf.install()
    module = _import(name, path)
    has = {attr for attr in (*FULL_REQUIRED, *SIMPLE_REQUIRED, *OPTAX_REQUIRED)
           if callable(getattr(module, attr, None))}
    frameworks = tuple(f for f, ok in (("torch", set(FULL_REQUIRED) <= has or set(SIMPLE_REQUIRED) <= has),
                                       ("jax", set(OPTAX_REQUIRED) <= has)) if ok)
    if framework not in frameworks and (framework != "torch" or frameworks):
        raise UserError(f"submission {path} has no {framework} form ({_FORM_HINT[framework]}); "
                        f"it has: {', '.join(frameworks) or 'none'}")
    if framework == "jax":
        try:  # jax and optax are an optional extra: imported only for a JAX trial
            from algobench.forms import optax
        except ImportError as err:
            raise UserError(f"--framework jax needs the jax extra ({err}): pip install -e '.[jax]'") from None
        form, fns = "optax", optax.full_form(module)
    elif set(FULL_REQUIRED) <= has:
        form = "algoperf" if algoperf.mentions_algoperf(source) or _positional(module.update_params) else "full"
    elif set(SIMPLE_REQUIRED) <= has:
        form = "simple"
    else:
        wanted = FULL_REQUIRED if has & set(FULL_REQUIRED) else SIMPLE_REQUIRED
        missing = [attr for attr in wanted if attr not in has]
        raise UserError(
            f"submission {path} is missing {', '.join(missing)}: a submission defines either "
            f"{' and '.join(SIMPLE_REQUIRED)} (simple form) or {' and '.join(FULL_REQUIRED)} (full form)")
    if form == "algoperf":
        fns = adapter.adapt(module)
    elif form != "optax":
        if form == "simple":
            simple.check_signatures(module, path)
        fns = {"full": base.full_form, "simple": simple.full_form}[form](module)
    try:
        defaults = base.hparams_mapping(getattr(module, "HPARAMS", None))
    except TypeError as err:
        raise UserError(f"submission {path}: {err}") from None
    return Submission(
        name=name, path=path, form=form, module=module, defaults=defaults,
        search_space=dict(getattr(module, "SEARCH_SPACE", {}) or {}),
        paper=getattr(module, "PAPER", ""),
        sha256=hashlib.sha256(source.encode()).hexdigest(), frameworks=frameworks,
        **fns,
    )


_FORM_HINT = {"torch": "make_optimizer and lr_schedule, or init_optimizer_state and update_params",
              "jax": "make_optax and lr_schedule"}


def load_hparams_file(path: Path) -> dict[str, Any]:
    """A JSON or YAML mapping of hyperparameter values."""
    if not path.is_file():
        raise UserError(f"hyperparameter file not found: {path}")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise UserError(f"hyperparameter file {path} is not valid {path.suffix.lstrip('.') or 'YAML'}: "
                        f"{str(err).splitlines()[0]}") from None
    return hparams_point(data, source=str(path))


def hparams_point(data: Any, *, source: str) -> dict[str, Any]:
    """One point of hyperparameters from the forms a file may take:
    - a mapping of name: value;
    - AlgoPerf's list of fixed points (`[{...}, ...]`): the first one;
    - AlgoPerf's search space (`{"lr": {"min": .., "max": .., "scaling": "log"}, "b": {"feasible_points": [..]}}`):
      its centre, the (log-)midpoint of each range and the first feasible point."""
    if isinstance(data, list):
        if not data or not all(isinstance(p, dict) for p in data):
            raise UserError(f"{source}: a list of hyperparameter points must hold mappings")
        return dict(data[0])
    if not isinstance(data, dict):
        raise UserError(f"hyperparameter file {source} must hold a mapping of name: value, got {type(data).__name__}")
    if data and all(isinstance(v, dict) for v in data.values()):
        return {name: _centre(name, space, source) for name, space in data.items()}
    return data


def _centre(name: str, space: dict, source: str) -> Any:
    if space.get("feasible_points"):
        return space["feasible_points"][0]
    try:
        lo, hi = float(space["min"]), float(space["max"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{source}: '{name}' needs min and max, or feasible_points") from None
    if space.get("scaling", "linear") == "log":
        if lo <= 0:
            raise UserError(f"{source}: '{name}' has log scaling with min <= 0")
        return math.sqrt(lo * hi)
    return (lo + hi) / 2


def _import(name: str, path: Path) -> ModuleType:
    module_name = f"algobench_submission_{name}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        with _user_submissions_package(path):
            spec.loader.exec_module(module)
    except SyntaxError as err:
        del sys.modules[module_name]
        raise UserError(f"submission {path}, line {err.lineno}: {err.msg}") from None
    except ImportError as err:
        del sys.modules[module_name]
        raise UserError(f"submission {path} failed to import: {err}") from None
    except SystemExit as err:
        del sys.modules[module_name]
        raise UserError(f"submission {path} calls sys.exit({err.code!r}) when imported") from None
    except Exception as err:  # the file's own code failed while it loaded: the user's error, in one line
        del sys.modules[module_name]
        raise UserError(f"submission {path}{_line_in(err, path)} failed to load: "
                        f"{type(err).__name__}: {err}") from None
    return module


def _line_in(err: BaseException, path: Path) -> str:
    """', line N': the last line of `path` in the error's traceback ('' if it is not there)."""
    lines = [frame.lineno for frame in traceback.extract_tb(err.__traceback__) if Path(frame.filename) == path]
    return f", line {lines[-1]}" if lines else ""


@contextlib.contextmanager
def _user_submissions_package(path: Path) -> Iterator[None]:
    """While a file under a folder named `submissions/` loads, `submissions.<sub-path>` also
    resolves inside that folder, as it does in AlgoPerf's repositories (their runner puts the
    repository's root on sys.path; a file imports its helper as
    `submissions.self_tuning.<name>.<module>`). The built-in submissions' folder stays first on
    the package's search path, so none of them is shadowed; the folder is removed afterwards
    (modules imported from it stay imported)."""
    root = next((p for p in path.parents if p.name == "submissions"), None)
    if root is None or root == submissions_dir():
        yield
        return
    # (imported by name, not `import submissions`: only its search path is touched, none of its code used)
    package = importlib.import_module("submissions")
    package.__path__.append(str(root))
    try:
        yield
    finally:
        package.__path__.remove(str(root))


def _positional(fn: Callable) -> bool:
    """AlgoPerf's functions take positional-or-keyword arguments; native full-form ones are keyword-only."""
    return any(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in inspect.signature(fn).parameters.values())
