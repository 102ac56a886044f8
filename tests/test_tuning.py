"""Search spaces, Halton sampling, study configs and resume planning (no training here)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import qmc

from algobench import submission as submission_lib
from algobench import tuning
from algobench.errors import UserError
from algobench.files import write_json
from algobench.specs import RunOptions, TrialConfig
from algobench.study import plan_study, trial_dir

# AlgoPerf's reference NAdamW search space (reference_algorithms/.../tuning_search_space.json), as is.
ALGOPERF_SPACE = {
    "learning_rate": {"min": 2e-4, "max": 1e-2, "scaling": "log"},
    "one_minus_beta1": {"min": 2e-2, "max": 0.5, "scaling": "log"},
    "beta2": {"feasible_points": [0.999]},
    "warmup_factor": {"feasible_points": [0.05]},
    "weight_decay": {"min": 5e-3, "max": 1.0, "scaling": "log"},
    "label_smoothing": {"feasible_points": [0.1, 0.2]},
    "dropout_rate": {"feasible_points": [0.0, 0.1]},
}


def base_config(tmp_path: Path, ruleset: str = "external", **options) -> TrialConfig:
    return TrialConfig(workload="gpt2", size="smoke", submission="adan", ruleset=ruleset,
                       results_dir=tmp_path / "results", options=RunOptions(**options))


# --- Halton -----------------------------------------------------------------------------------


def test_halton_is_reproducible_and_seeded():
    a, b, c = (tuning.halton(16, 3, seed=s) for s in (7, 7, 8))
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.shape == (16, 3) and (a >= 0).all() and (a < 1).all()


def test_halton_points_are_stratified_in_each_base():
    """The first b**k points of dimension j (base b = j-th prime) fill each 1/b**k cell once:
    scrambling permutes digits, so the stratification of the van der Corput sequence holds."""
    for seed in range(5):
        points = tuning.halton(27, 3, seed=seed)
        for dim, base, n in ((0, 2, 16), (1, 3, 27), (2, 5, 25)):
            cells = np.floor(points[:n, dim] * n).astype(int)
            assert sorted(cells) == list(range(n)), (seed, dim, base)


def test_halton_has_lower_discrepancy_than_random_points():
    rng = np.random.default_rng(0)
    halton = np.mean([qmc.discrepancy(tuning.halton(64, 4, seed=s)) for s in range(5)])
    random = np.mean([qmc.discrepancy(rng.random((64, 4))) for _ in range(20)])
    assert halton < random / 3


# --- sampling -----------------------------------------------------------------------------------


def test_sample_respects_ranges_scales_and_points():
    space = tuning.parse_search_space(ALGOPERF_SPACE, source="algoperf")
    points = tuning.sample(space, 64, seed=1)
    lrs = np.array([p["learning_rate"] for p in points])
    assert lrs.min() >= 2e-4 and lrs.max() <= 1e-2
    # log scaling: as many points per decade-fraction in log space, not bunched near the max
    logs = (np.log(lrs) - math.log(2e-4)) / (math.log(1e-2) - math.log(2e-4))
    assert np.histogram(logs, bins=4, range=(0, 1))[0].tolist() == [16, 16, 16, 16]
    assert {p["beta2"] for p in points} == {0.999}
    assert {p["label_smoothing"] for p in points} == {0.1, 0.2}
    assert sum(p["dropout_rate"] == 0.0 for p in points) == 32
    assert all(type(p["learning_rate"]) is float for p in points)  # JSON-able, not numpy
    assert tuning.sample(space, 5, seed=1) == points[:5]


def test_linear_scaling_is_uniform():
    space = tuning.parse_search_space({"warmup_frac": {"min": 0.0, "max": 0.2, "scaling": "linear"}}, source="x")
    values = np.array([p["warmup_frac"] for p in tuning.sample(space, 40, seed=3)])
    assert np.histogram(values, bins=4, range=(0, 0.2))[0].tolist() == [10, 10, 10, 10]


def test_fixed_points_list_is_used_in_order():
    points = [{"learning_rate": 0.01, "weight_decay": 0.1}, {"learning_rate": 0.003, "weight_decay": 0.05}]
    space = tuning.parse_search_space(points, source="list.json")
    assert tuning.sample(space, 2, seed=0) == points
    assert space.names() == ["learning_rate", "weight_decay"]
    with pytest.raises(UserError, match="lists 2 points; cannot run 3 trials"):
        tuning.sample(space, 3, seed=0)


# --- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize("space,message", [
    ({"learning_rate": {"min": 0.1, "max": 0.01, "scaling": "log"}}, "learning_rate: min 0.1 > max 0.01"),
    ({"learning_rate": {"min": 0.0, "max": 0.01, "scaling": "log"}}, "learning_rate: log scaling needs min > 0"),
    ({"learning_rate": {"min": 1e-3, "max": 0.01, "scale": "log"}},
     "learning_rate: unknown key 'scale'; did you mean: scaling"),
    ({"learning_rate": {"min": 1e-3, "max": 0.01}}, "learning_rate: missing 'scaling' (log or linear)"),
    ({"learning_rate": {"min": 1e-3, "max": 0.01, "scaling": "exp"}}, "learning_rate: scaling:"),
    ({"beta1": {"feasible_points": []}}, "beta1: feasible_points:"),
    ({"beta1": {"feasible_points": [0.9], "min": 0.1}}, "beta1: give either feasible_points or min/max/scaling"),
    ({"beta1": 0.9}, "beta1: expected {min, max, scaling} or {feasible_points: [...]}, got 0.9"),
    ({"learning_rate": {"min": "a", "max": 0.01, "scaling": "log"}}, "learning_rate: min:"),
    ([], "the list of fixed points is empty"),
    ([{"learning_rate": 0.1}, 3], "point 1 must be a mapping"),
    ("lr", "must map each hyperparameter"),
])
def test_invalid_search_space_names_the_problem(space, message):
    with pytest.raises(UserError) as err:
        tuning.parse_search_space(space, source="space.json")
    assert "search space space.json" in str(err.value)
    assert message in str(err.value)


def test_algoperf_file_is_accepted_as_is_and_checked_against_the_submission(tmp_path):
    path = tmp_path / "tuning_search_space.json"
    path.write_text(json.dumps(ALGOPERF_SPACE, indent=2))
    space = tuning.load_search_space(path)
    assert isinstance(space.params["learning_rate"], tuning.RangeParam)
    assert space.params["label_smoothing"].feasible_points == [0.1, 0.2]
    adan = submission_lib.load("adan")
    with pytest.raises(UserError, match="'beta2' is not|'dropout_rate' is not"):
        tuning.check_names(space, submission="adan", hparams=list(adan.defaults))
    tuning.check_names(space, submission="any", hparams=[])  # a submission without HPARAMS: no check


def test_search_space_file_errors(tmp_path):
    with pytest.raises(UserError, match="search space file not found"):
        tuning.load_search_space(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: {min: 1e-3, max: [")
    with pytest.raises(UserError, match="is not valid YAML"):
        tuning.load_search_space(bad)
    good = tmp_path / "good.yaml"
    good.write_text("learning_rate: {min: 1.0e-3, max: 3.0e-2, scaling: log}\n")
    assert tuning.load_search_space(good).params["learning_rate"].max == 3e-2


def test_builtin_search_spaces_are_valid():
    for name in submission_lib.builtin_names():
        sub = submission_lib.load(name)
        if sub.search_space:
            space = tuning.parse_search_space(sub.search_space, source=name)
            tuning.check_names(space, submission=name, hparams=list(sub.defaults))
            for point in tuning.sample(space, 3, seed=0):
                sub.hparams(point)


# --- study configs ---------------------------------------------------------------------------------


def test_study_configs_external(tmp_path):
    space = tuning.parse_search_space(submission_lib.load("adan").search_space, source="adan")
    configs = tuning.study_configs(base_config(tmp_path), space=space, trials=3, studies=2, seed=5,
                                   base_budget_s=120)
    assert [(c.study, c.trial) for c in configs] == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
    assert len({c.seed for c in configs}) == 6
    assert configs[0].hparams != configs[3].hparams  # each study draws its own points
    again = tuning.study_configs(base_config(tmp_path), space=space, trials=3, studies=2, seed=5,
                                 base_budget_s=120)
    assert again == configs
    other = tuning.study_configs(base_config(tmp_path), space=space, trials=3, studies=2, seed=6,
                                 base_budget_s=120)
    assert [c.hparams for c in other] != [c.hparams for c in configs]
    assert all(c.options.budget_s is None for c in configs)
    with pytest.raises(UserError, match="needs a search space"):
        tuning.study_configs(base_config(tmp_path), space=None, trials=3, studies=1, seed=0, base_budget_s=1)


def test_study_configs_self_tuning(tmp_path):
    configs = tuning.study_configs(base_config(tmp_path, "self"), space=None, trials=1, studies=3, seed=0,
                                   base_budget_s=120)
    assert [(c.study, c.trial) for c in configs] == [(1, 1), (2, 1), (3, 1)]
    assert all(c.options.budget_s == 180 and c.hparams == {} for c in configs)
    doubled = tuning.study_configs(base_config(tmp_path, "self"), space=None, trials=1, studies=1, seed=0,
                                   base_budget_s=50, self_budget_factor=2.0)
    assert doubled[0].options.budget_s == 100
    space = tuning.parse_search_space({"learning_rate": {"feasible_points": [0.1]}}, source="s")
    with pytest.raises(UserError, match="self-tuning ruleset has no search space"):
        tuning.study_configs(base_config(tmp_path, "self"), space=space, trials=1, studies=1, seed=0,
                             base_budget_s=1)
    with pytest.raises(UserError, match="a self-tuning study is a single trial"):
        tuning.study_configs(base_config(tmp_path, "self"), space=None, trials=2, studies=1, seed=0,
                             base_budget_s=1)


# --- resume planning ---------------------------------------------------------------------------------


def _fake_trial(config: TrialConfig, *, finished: bool, **changes) -> Path:
    folder = trial_dir(config)
    recorded = config.model_copy(update=changes)
    write_json(folder / "metadata.json", {"config": json.loads(recorded.model_dump_json())})
    if finished:
        write_json(folder / "summary.json", {"status": "reached"})
    return folder


def test_plan_skips_finished_redoes_unfinished_and_refuses_other_configs(tmp_path):
    space = tuning.parse_search_space({"learning_rate": {"min": 1e-3, "max": 1e-2, "scaling": "log"}}, source="s")
    configs = tuning.study_configs(base_config(tmp_path), space=space, trials=3, studies=1, seed=0,
                                   base_budget_s=120)
    assert trial_dir(configs[0]) == tmp_path / "results" / "gpt2" / "smoke" / "adan" / "study1-trial1"
    done = _fake_trial(configs[0], finished=True)
    half = _fake_trial(configs[1], finished=False)
    plan = plan_study(configs)
    assert plan.finished == (done,)
    assert plan.unfinished == (half,)
    assert plan.todo == (configs[1], configs[2])

    _fake_trial(configs[2], finished=True, hparams={"learning_rate": 0.5})
    with pytest.raises(UserError, match=r"study1-trial3 holds a finished trial with another config "
                                        r"\(hparams.learning_rate: .* now, 0.5 then\)"):
        plan_study(configs)
