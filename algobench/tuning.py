"""Tuning studies: search spaces, scrambled Halton sampling, and the trial configs of a study.

A search space is AlgoPerf's `tuning_search_space.json` format, in JSON or YAML:

    {"learning_rate": {"min": 1e-3, "max": 3e-2, "scaling": "log"},
     "warmup_frac": {"feasible_points": [0.02, 0.05, 0.1]}}

or a plain list of fixed points (`[{"learning_rate": 0.01, ...}, ...]`, trial i uses point i).
Under the external-tuning ruleset each study draws its own scrambled Halton points (seeded by
the study's seed, so the same seed gives the same trials). Under the self-tuning ruleset a study
is one trial with the submission's defaults and a budget multiplied by `self_budget_factor`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import Field, ValidationError, model_validator

from algobench.errors import UserError, closest
from algobench.specs import Frozen, TrialConfig

RANGE_KEYS = ("min", "max", "scaling")
POINTS_KEY = "feasible_points"
SELF_BUDGET_FACTOR = 1.5  # AlgoPerf v0.6: self-tuning submissions get 1.5x the external budget


def self_budget(base_budget_s: float, factor: float = SELF_BUDGET_FACTOR) -> float:
    """The self-tuning ruleset's budget: `factor` times the external one (one rule, for run and tune)."""
    if factor <= 0:
        raise UserError(f"--self-budget-factor must be > 0, got {factor:g}")
    return base_budget_s * factor
DEFAULT_TRIALS = 5


class RangeParam(Frozen):
    """A continuous range: `{"min": 1e-4, "max": 1e-2, "scaling": "log"}`."""

    min: float
    max: float
    scaling: Literal["linear", "log"]

    @model_validator(mode="after")
    def _check(self) -> RangeParam:
        if not (math.isfinite(self.min) and math.isfinite(self.max)):
            raise ValueError("min and max must be finite numbers")
        if self.min > self.max:
            raise ValueError(f"min {self.min:g} > max {self.max:g}")
        if self.scaling == "log" and self.min <= 0:
            raise ValueError(f"log scaling needs min > 0, got min {self.min:g}")
        return self

    def value(self, u: float) -> float:
        """The point at quantile `u` in [0, 1) of the range, on its scale."""
        if self.scaling == "log":
            return float(math.exp(math.log(self.min) + u * (math.log(self.max) - math.log(self.min))))
        return float(self.min + u * (self.max - self.min))


class PointsParam(Frozen):
    """A discrete choice: `{"feasible_points": [0.9, 0.95]}`."""

    feasible_points: list[Any] = Field(min_length=1)

    def value(self, u: float) -> Any:
        n = len(self.feasible_points)
        return self.feasible_points[min(int(u * n), n - 1)]


Param = RangeParam | PointsParam


class SearchSpace(Frozen):
    """Either one spec per hyperparameter (`params`) or a list of fixed points."""

    source: str  # where it came from, for error messages
    params: dict[str, Param] = Field(default_factory=dict)
    fixed_points: list[dict[str, Any]] | None = None

    def names(self) -> list[str]:
        if self.fixed_points is not None:
            return sorted({name for point in self.fixed_points for name in point})
        return sorted(self.params)


# ---------------------------------------------------------------------------------------------
# Parsing and validation: every error names the hyperparameter and the problem.


def parse_search_space(data: Any, *, source: str) -> SearchSpace:
    """A validated search space from parsed JSON/YAML (a mapping or a list of points)."""
    where = f"search space {source}"
    if isinstance(data, list):
        if not data:
            raise UserError(f"{where}: the list of fixed points is empty")
        for i, point in enumerate(data):
            if not isinstance(point, Mapping) or not point:
                raise UserError(f"{where}: point {i} must be a mapping of name: value, got {point!r}")
        return SearchSpace(source=source, fixed_points=[dict(p) for p in data])
    if not isinstance(data, Mapping) or not data:
        raise UserError(f"{where} must map each hyperparameter to {{min, max, scaling}} or "
                        f"{{feasible_points: [...]}}, or be a list of points; got {type(data).__name__}")
    return SearchSpace(source=source, params={str(name): _parse_param(str(name), spec, where)
                                              for name, spec in data.items()})


def _parse_param(name: str, spec: Any, where: str) -> Param:
    if not isinstance(spec, Mapping):
        raise UserError(f"{where}: {name}: expected {{min, max, scaling}} or {{feasible_points: [...]}}, "
                        f"got {spec!r}")
    for key in spec:
        if key not in (*RANGE_KEYS, POINTS_KEY):
            hint = ", ".join(closest(str(key), (*RANGE_KEYS, POINTS_KEY)))
            raise UserError(f"{where}: {name}: unknown key '{key}'; did you mean: {hint}?")
    if POINTS_KEY in spec and any(key in spec for key in RANGE_KEYS):
        raise UserError(f"{where}: {name}: give either feasible_points or min/max/scaling, not both")
    model = PointsParam if POINTS_KEY in spec else RangeParam
    try:
        return model.model_validate(dict(spec))
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        problem = first["msg"].removeprefix("Value error, ")
        if first["type"] == "missing":
            problem = f"missing '{field}'" + (" (log or linear)" if field == "scaling" else "")
        elif field:
            problem = f"{field}: {problem}"
        raise UserError(f"{where}: {name}: {problem}") from None


def load_search_space(path: Path) -> SearchSpace:
    """A search space file: JSON (`.json`) or YAML (anything else)."""
    if not path.is_file():
        raise UserError(f"search space file not found: {path}")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as err:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise UserError(f"search space {path} is not valid {kind}: {str(err).splitlines()[0]}") from None
    return parse_search_space(data, source=str(path))


def check_names(space: SearchSpace, *, submission: str, hparams: Sequence[str]) -> None:
    """Every hyperparameter of the space is one the submission has (when it declares any)."""
    if not hparams:
        return
    for name in space.names():
        if name not in hparams:
            raise UserError(f"search space {space.source}: '{name}' is not a hyperparameter of "
                            f"{submission}; did you mean: {', '.join(closest(name, hparams))}?")


# ---------------------------------------------------------------------------------------------
# Sampling


def halton(n: int, dims: int, *, seed: int) -> np.ndarray:
    """`n` scrambled Halton points in [0, 1)^dims, the same for the same seed."""
    from scipy.stats import qmc  # a 2 s import: only when sampling

    if dims == 0:
        return np.zeros((n, 0))
    return qmc.Halton(d=dims, scramble=True, rng=np.random.default_rng(seed)).random(n)


def sample(space: SearchSpace, n: int, *, seed: int) -> list[dict[str, Any]]:
    """`n` hyperparameter points: the first `n` fixed points, or `n` Halton points of the space."""
    if space.fixed_points is not None:
        if n > len(space.fixed_points):
            raise UserError(f"search space {space.source} lists {len(space.fixed_points)} points; "
                            f"cannot run {n} trials from it")
        return [dict(p) for p in space.fixed_points[:n]]
    names = sorted(space.params)  # a fixed dimension order: the file's key order does not matter
    us = halton(n, len(names), seed=seed)
    return [{name: space.params[name].value(float(u[j])) for j, name in enumerate(names)} for u in us]


# ---------------------------------------------------------------------------------------------
# The trials of a study


def derived_seed(*parts: int) -> int:
    """A seed in [0, 2**31) derived from `parts`: distinct parts give independent streams."""
    return int(np.random.SeedSequence([p % 2**32 for p in parts]).generate_state(1)[0] % 2**31)


def study_configs(base: TrialConfig, *, space: SearchSpace | None, trials: int, studies: int, seed: int,
                  base_budget_s: float, self_budget_factor: float = SELF_BUDGET_FACTOR) -> list[TrialConfig]:
    """The configs of `studies` studies of `trials` trials each, numbered from 1.

    external: study k samples its points with seed derived_seed(seed, k); trial i of it runs
    with seed derived_seed(seed, k, i). self: one trial per study with the submission's
    defaults (plus `base.hparams`) and a budget of `base_budget_s * self_budget_factor`.
    """
    if trials < 1 or studies < 1:
        raise UserError("--trials and --studies must be at least 1")
    if base.ruleset == "self":
        if space is not None:
            raise UserError("the self-tuning ruleset has no search space: the submission tunes itself; "
                            "drop --search-space or use --ruleset external")
        if trials != 1:
            raise UserError(f"a self-tuning study is a single trial; got --trials {trials} "
                            f"(use --studies for repetitions)")
        options = base.options.model_copy(update={"budget_s": self_budget(base_budget_s, self_budget_factor)})
        return [base.model_copy(update={"study": k, "trial": 1, "seed": derived_seed(seed, k, 1),
                                        "options": options}) for k in range(1, studies + 1)]
    if space is None:
        raise UserError("the external-tuning ruleset needs a search space: pass --search-space FILE "
                        "(the submission defines no SEARCH_SPACE)")
    configs = []
    for k in range(1, studies + 1):
        for i, point in enumerate(sample(space, trials, seed=derived_seed(seed, k)), start=1):
            configs.append(base.model_copy(update={"hparams": {**base.hparams, **point}, "study": k, "trial": i,
                                                   "seed": derived_seed(seed, k, i)}))
    return configs
