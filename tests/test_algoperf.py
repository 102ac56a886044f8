"""AlgoPerf PyTorch submission files run unmodified through the adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from algobench import submission as submission_lib
from algobench.events import Ended, Evaluated
from algobench.runner import run_trial
from algobench.specs import RunOptions, TrialConfig
from algobench.frameworks.torch import TorchBackend, TorchFramework
from workloads import WORKLOADS
from tests.helpers import cli, ensure_smoke

HERE = Path(__file__).parent / "algoperf_submissions"


def trial(data_dir, name, **kw) -> TrialConfig:
    hparams = kw.pop("hparams", {})
    return TrialConfig(workload="gpt2", size="smoke", submission=str(HERE / name), hparams=hparams,
                       data_dir=data_dir, ruleset=kw.pop("ruleset", "external"),
                       options=RunOptions(**{"max_steps": 20, "eval_period_steps": 5, "budget_s": 100_000, **kw}))


def test_baseline_style_submission_runs_with_its_search_space_file(data_dir):
    sub = submission_lib.load(str(HERE / "baseline_style.py"))
    assert sub.form == "algoperf"
    point = submission_lib.load_hparams_file(HERE / "tuning_search_space.json")
    events = list(run_trial(trial(data_dir, "baseline_style.py", hparams=point), sub))
    end = events[-1]
    assert isinstance(end, Ended) and end.status == "not_reached" and end.reason == "max steps", end.traceback
    assert events[0].batch_size == 16  # get_batch_size raised ValueError for finewebedu_lm: the preset decides
    (init,), updates = sub.module.CALLS[:1], sub.module.CALLS[1:]
    assert init == ("init", ("ppl", 100_000, 3, None, "Hyperparameters"))  # AlgoPerf's LM target metric; the budget
    # given, the preset's eval period
    assert [u[1][0] for u in updates] == list(range(20))
    step, loss_type, n_evals, smoothing, clip, train_state, types, n_is_tensor = updates[7][1]
    from algoperf import spec

    assert loss_type is spec.LossType.SOFTMAX_CROSS_ENTROPY and n_evals == 1
    assert smoothing == 0.1 and clip == 1.0 and n_is_tensor
    assert "global_step" not in train_state and train_state["accumulated_submission_time"] > 0  # AlgoPerf's keys
    assert types == {spec.ParameterType.WEIGHT, spec.ParameterType.BIAS, spec.ParameterType.EMBEDDING,
                     spec.ParameterType.LAYER_NORM_SCALE, spec.ParameterType.LAYER_NORM_BIAS}
    evals = [e for e in events if isinstance(e, Evaluated)]
    assert evals[-1].metrics["val_loss"] < evals[0].metrics["val_loss"]


def test_features_style_submission_under_self_tuning(data_dir):
    sub = submission_lib.load(str(HERE / "features_style.py"))
    events = list(run_trial(trial(data_dir, "features_style.py", ruleset="self", max_steps=50), sub))
    end = events[-1]
    assert end.status == "not_reached" and end.reason.startswith("training complete"), end.traceback
    assert end.steps == sub.module.STOP_AT
    seen = sub.module.SEEN
    assert seen["hyperparameters"] == [None]
    assert events[0].batch_size == 8  # its get_batch_size knows finewebedu_lm (gpt2's AlgoPerf name)
    assert all(r.dtype.name == "int32" and r.shape == (2,) for r in seen["rngs"])
    assert seen["prepare"] == [5, 10, 12]  # prepare_for_eval before every eval, the final one too
    step, results = seen["eval_results"][-1]
    assert step == 10 and {k for k in results if k.startswith("test/")} == set()  # the test split: only at the end
    assert {"validation/loss", "validation/ppl", "validation/num_examples", "score"} <= set(results)
    final = [e for e in events if isinstance(e, Evaluated)][-1]
    assert final.step == 12 and {"val_loss", "test_loss"} <= set(final.metrics)
    from algoperf import spec

    assert isinstance(seen["shapes"]["wte.weight"], spec.ShapeTuple)
    assert seen["shapes"]["wte.weight"].shape_tuple == (1024, 96)


def test_update_batch_norm_false_freezes_running_stats():
    from algobench.algoperf.pytorch_utils import update_batch_norm_fn

    bn = torch.nn.BatchNorm1d(3)
    update_batch_norm_fn(bn, update_batch_norm=False)
    bn(torch.randn(8, 3) + 5)
    assert torch.equal(bn.running_mean, torch.zeros(3))
    update_batch_norm_fn(bn, update_batch_norm=True)
    bn(torch.randn(8, 3) + 5)
    assert bn.running_mean.abs().sum() > 0


@pytest.mark.parametrize("data,expected", [
    ({"lr": 0.1}, {"lr": 0.1}),
    ([{"lr": 0.2}, {"lr": 0.3}], {"lr": 0.2}),
    ({"lr": {"min": 1e-4, "max": 1e-2, "scaling": "log"}, "b": {"feasible_points": [0.9, 0.99]},
      "w": {"min": 0.0, "max": 0.2, "scaling": "linear"}}, {"lr": pytest.approx(1e-3), "b": 0.9, "w": pytest.approx(0.1)}),
])
def test_hparams_point_from_every_file_form(data, expected):
    assert submission_lib.hparams_point(data, source="f.json") == expected


def test_cli_runs_an_algoperf_file(tmp_path, data_dir):
    res = cli("run", "-w", "gpt2", "-s", str(HERE / "baseline_style.py"), "--hparams",
              str(HERE / "tuning_search_space.json"), "--max-steps", "10", "--data-dir", str(data_dir),
              "--results-dir", str(tmp_path / "res"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    (trial_dir,) = list((tmp_path / "res" / "gpt2" / "smoke" / "baseline_style").iterdir())
    summary = json.loads((trial_dir / "summary.json").read_text())
    assert summary["status"] == "not_reached" and summary["hparams"]["label_smoothing"] == 0.1
    meta = json.loads((trial_dir / "metadata.json").read_text())
    assert meta["submission"]["form"] == "algoperf"


ALGOPERF_COUNTERPARTS = [name for name in WORKLOADS.names() if WORKLOADS.get(name).algoperf_name]
# The variants share their base's model_fn and loss_fn (checked for every workload in test_contracts).
ALGOPERF_BASES = [n for n in ALGOPERF_COUNTERPARTS if WORKLOADS.get(n).algoperf_name in ("finewebedu_lm", "imagenet_vit", "ogbg")]


def test_every_algoperf_family_has_a_counterpart_here():
    families = {WORKLOADS.get(n).algoperf_name.split("_")[0] for n in ALGOPERF_COUNTERPARTS}
    assert {"finewebedu", "imagenet", "ogbg"} <= families


@pytest.mark.parametrize("name", ALGOPERF_BASES)
def test_algoperf_file_runs_unmodified_on_every_workload_with_a_counterpart(name, data_dir, tmp_path):
    """The baseline-style file and its search space, as they are, on gpt2, vit and gnn: trials land in results/ like native ones, and the loss type is AlgoPerf's."""
    spec = WORKLOADS.get(name)
    ensure_smoke(spec.name, data_dir)
    res = cli("run", "-w", name, "-s", str(HERE / "baseline_style.py"), "--hparams",
              str(HERE / "tuning_search_space.json"), "--max-steps", "3", "--eval-every-steps", "3",
              "--batch-size", "8", "--data-dir", str(data_dir), "--results-dir", str(tmp_path / "res"), cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    (trial_dir,) = list((tmp_path / "res" / name / "smoke" / "baseline_style").iterdir())
    summary = json.loads((trial_dir / "summary.json").read_text())
    assert summary["status"] == "not_reached" and summary["steps"] == 3, summary
    from algobench.algoperf.adapter import AlgoPerfWorkload
    from algobench.algoperf import spec as algoperf_spec

    cfg = TrialConfig(workload=name, size="smoke", submission="adamw", data_dir=data_dir)
    wl = TorchFramework(TorchBackend.choose("cpu")).prepare(cfg, spec, spec.preset("smoke"))
    expected = (algoperf_spec.LossType.SIGMOID_CROSS_ENTROPY if spec.algoperf_name.startswith("ogbg")
                else algoperf_spec.LossType.SOFTMAX_CROSS_ENTROPY)
    assert AlgoPerfWorkload(wl).loss_type is expected
