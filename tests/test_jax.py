"""The JAX backend: parity with torch (models and submissions), trials through the same runner,
results, checkpoints and data parallelism. Parametrized over the registries: a workload with a
`build_jax` or a submission with `make_optax` is tested by being registered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

jax = pytest.importorskip("jax")
pytest.importorskip("optax")

from algobench import submission as submission_lib  # noqa: E402
from algobench.frameworks.jax import JaxBackend, from_torch  # noqa: E402
from algobench.events import Ended, Evaluated  # noqa: E402
from algobench.runner import run_trial  # noqa: E402
from algobench.specs import RunOptions, TrialConfig  # noqa: E402
from algobench.trial import TrialSuspended, execute  # noqa: E402
from algobench.frameworks.torch import TorchBackend  # noqa: E402
from algobench.workload import ParamKind  # noqa: E402
from workloads import WORKLOADS  # noqa: E402
from tests.helpers import cli, ensure_smoke  # noqa: E402

JAX_WORKLOADS = [name for name in WORKLOADS.names() if "jax" in WORKLOADS.get(name).frameworks]
JAX_SUBMISSIONS = [name for name in submission_lib.builtin_names()
                   if "jax" in submission_lib.load(name).frameworks]


def jax_config(data_dir: Path, workload: str = "gpt2", submission: str = "adamw", **options) -> TrialConfig:
    options = {"device": "cpu", "max_steps": 10, "eval_period_steps": 5, "budget_s": 100_000} | options
    return TrialConfig(workload=workload, size="smoke", submission=submission, framework="jax",
                       seed=options.pop("seed", 0), data_dir=data_dir, options=RunOptions(**options))


def both(name: str, data_dir: Path, precision: str = "fp32", batch_size: int = 16):
    """The torch and JAX workloads of `name` at smoke size, and a torch batch."""
    spec = WORKLOADS.get(name)
    ensure_smoke(spec.name, data_dir)
    preset = spec.presets["smoke"]
    tw = spec.build_torch(preset=preset, size="smoke", data_dir=data_dir, backend=TorchBackend.choose("cpu", "fp32"))
    jw = spec.build_jax(preset=preset, size="smoke", data_dir=data_dir, backend=JaxBackend.choose("cpu", precision))
    return tw, jw, next(tw.train_batches(seed=0, batch_size=batch_size))


def test_the_baselines_and_workloads_have_jax_versions():
    assert {"gpt2", "vit"} <= set(JAX_WORKLOADS)
    assert {"adamw", "nadamw", "adan"} <= set(JAX_SUBMISSIONS)


# --- models: same weights and batch, same loss and gradients -------------------------------------

@pytest.mark.parametrize("name", JAX_WORKLOADS)
def test_jax_model_matches_torch_loss_and_gradients(name, data_dir):
    tw, jw, batch = both(name, data_dir)
    model = tw.init_model(seed=0)
    with torch.no_grad():  # a zero-initialised head would leave the body's gradients at zero
        for p in model.parameters():
            if not p.abs().sum():
                p.normal_(std=0.05)
    fresh = jw.init_model(seed=0)
    assert {k: tuple(v.shape) for k, v in fresh.items()} == {k: tuple(p.shape) for k, p in model.named_parameters()}
    assert jw.param_types == tw.param_types
    params = from_torch(model)
    loss_t = tw.loss(model, batch)
    loss_t.backward()
    loss_j, grads = jax.value_and_grad(jw.loss)(params, jw.backend.put_batch(batch))
    assert float(loss_j) == pytest.approx(loss_t.item(), rel=1e-5)
    for n, p in model.named_parameters():
        scale = p.grad.abs().max().item() + 1e-12
        assert np.abs(np.asarray(grads[n]) - p.grad.numpy()).max() <= 1e-4 * scale, n
    for split in jw.eval_splits:
        got, want = jw.evaluate(params, split), tw.evaluate(model, split)
        assert got.keys() == want.keys() and all(got[k] == pytest.approx(want[k], rel=1e-5, abs=1e-6) for k in got)


@pytest.mark.parametrize("name", JAX_WORKLOADS)
def test_jax_init_draws_what_torch_draws(name, data_dir):
    """Each parameter's initial values come from the torch init's distribution (a two-sample
    Kolmogorov-Smirnov test per tensor; both draws are seeded, so the test is deterministic) and
    the same std to sampling noise (4/sqrt(n) relative: 4% for 9,216 values), and the constant ones
    (norms, zeroed biases and heads) are equal. A uniform for a normal shows as a tiny p-value; a
    std 10% off, or a normal truncated at 2 std, as a std outside the band."""
    from scipy.stats import ks_2samp  # scipy: a core dependency, used only here in this file

    tw, jw, _ = both(name, data_dir)
    want = {k: p.detach().numpy().ravel() for k, p in tw.init_model(seed=0).named_parameters()}
    got = {k: np.asarray(v).ravel() for k, v in jw.init_model(seed=0).items()}
    differ = []
    for key, t in want.items():
        if t.min() == t.max() or got[key].min() == got[key].max():
            if not np.array_equal(t, got[key]):
                differ.append(f"{key}: constant {t[0]} in torch, not in jax")
        elif (p := ks_2samp(t, got[key]).pvalue) < 1e-3 or abs(got[key].std() / t.std() - 1) > 4 / t.size**0.5:
            differ.append(f"{key}: KS p={p:.1e}, std {t.std():.4g} (torch) vs {got[key].std():.4g} (jax)")
    assert differ == []


@pytest.mark.parametrize("name", JAX_WORKLOADS[:1] + ["vit"])
def test_bf16_loss_is_close_to_fp32(name, data_dir):
    _, jw32, batch = both(name, data_dir)
    _, jw16, _ = both(name, data_dir, precision="bf16")
    params = jw32.init_model(seed=0)
    jw16.init_model(seed=0)
    assert jw16.backend.describe()["precision"] == "bf16"
    loss32 = float(jw32.loss(params, jw32.backend.put_batch(batch)))
    loss16 = float(jw16.loss(params, jw16.backend.put_batch(batch)))
    assert loss16 == pytest.approx(loss32, rel=2e-2)


# --- submissions: the same updates on a small problem ---------------------------------------------

class TinyTorch(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(3, 5, generator=torch.Generator().manual_seed(0)))
        self.bias = torch.nn.Parameter(torch.full((3,), 0.1))


def tiny_loss_torch(model, batch):
    x, y = batch
    return ((torch.tanh(x @ model.weight.T + model.bias) - y) ** 2).mean()


def tiny_loss_jax(params, batch):
    x, y = batch
    return ((jax.numpy.tanh(x @ params["weight"].T + params["bias"]) - y) ** 2).mean()


@pytest.mark.parametrize("name", JAX_SUBMISSIONS)
@pytest.mark.parametrize("overrides", [{}, {"grad_clip": 0.05}])
def test_optax_submission_makes_the_torch_updates(name, overrides):
    """Both forms through the harness (schedule, clipping, weight decay mask), 25 steps of a small
    regression with a warmup and a cosine decay: the same parameters within float32 tolerance."""
    torch_sub, jax_sub = submission_lib.load(name), submission_lib.load(name, framework="jax")
    hp = submission_lib.make_hparams(torch_sub.hparams(overrides))
    kinds = {"weight": ParamKind.WEIGHT, "bias": ParamKind.BIAS}
    model = TinyTorch()
    params = from_torch(model)
    t_wl = SimpleNamespace(param_types=kinds, step_hint=30, loss=tiny_loss_torch)
    j_wl = SimpleNamespace(param_types=kinds, step_hint=30, loss=tiny_loss_jax, backend=JaxBackend.choose("cpu"),
                           decay_mask={"weight": True, "bias": False})
    common = dict(model_state=None, hyperparameters=hp, rng=None)
    t_state = torch_sub.init_optimizer_state(workload=t_wl, model_params=model, **common)
    j_state = jax_sub.init_optimizer_state(workload=j_wl, model_params=params, **common)
    rng = np.random.default_rng(0)
    for step in range(25):
        x, y = rng.normal(size=(8, 5)).astype(np.float32), rng.normal(size=(8, 3)).astype(np.float32)
        step_args = dict(current_params_types=kinds, loss_type="cross_entropy", eval_results=[], global_step=step,
                         **common)
        t_state, model, _, t_loss = torch_sub.update_params(
            workload=t_wl, current_param_container=model, batch=(torch.from_numpy(x), torch.from_numpy(y)),
            optimizer_state=t_state, **step_args)
        j_state, params, _, j_loss = jax_sub.update_params(
            workload=j_wl, current_param_container=params, batch=(jax.numpy.asarray(x), jax.numpy.asarray(y)),
            optimizer_state=j_state, **step_args)
        assert float(j_loss) == pytest.approx(t_loss.item(), rel=1e-5)
        for key, p in model.named_parameters():
            np.testing.assert_allclose(np.asarray(params[key]), p.detach().numpy(), rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name} step {step} {key}")


def test_torch_only_and_jax_only_submissions_say_what_they_lack(tmp_path):
    path = tmp_path / "only_optax.py"
    path.write_text(textwrap.dedent("""
        import optax
        HPARAMS = {"learning_rate": 1e-3}
        def make_optax(*, learning_rate, hparams, workload):
            return optax.sgd(learning_rate)
        def lr_schedule(*, step, step_hint, hparams):
            return hparams.learning_rate
    """))
    assert submission_lib.load(str(path), framework="jax").frameworks == ("jax",)
    with pytest.raises(Exception, match="has no torch form.*it has: jax"):
        submission_lib.load(str(path))
    assert submission_lib.load("heavy_ball").frameworks == ("torch",)
    with pytest.raises(Exception, match="has no jax form"):
        submission_lib.load("heavy_ball", framework="jax")


# --- trials through the same runner ---------------------------------------------------------------

def test_jax_trial_runs_through_the_runner_and_records_its_framework(data_dir, tmp_path):
    cfg = jax_config(data_dir).model_copy(update={"results_dir": tmp_path})
    summary, folder = execute(cfg)
    assert folder.name.startswith("jax-run-") and summary["framework"] == "jax"
    assert summary["status"] == "not_reached" and summary["reason"] == "max steps" and summary["steps"] == 10
    assert 0 < summary["compile_time_s"] < summary["submission_time_s"]
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["framework"] == "jax" and metadata["config"]["framework"] == "jax"
    assert metadata["backend"]["framework"] == "jax" and metadata["n_params"] > 0


def test_same_seed_gives_identical_jax_eval_history(data_dir):
    first, second = ([(e.step, e.metrics) for e in run_trial(jax_config(data_dir, seed=1)) if isinstance(e, Evaluated)]
                     for _ in range(2))
    assert first == second and len(first) == 2


def test_cli_runs_jax_and_lists_frameworks(data_dir, tmp_path):
    res = cli("run", "--workload", "gpt2", "--framework", "jax", "--submission", "nadamw", "--max-steps", "4",
              "--eval-every-steps", "4", "--device", "cpu", "--data-dir", str(data_dir),
              "--results-dir", str(tmp_path / "res"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    (summary,) = (tmp_path / "res").rglob("summary.json")
    assert json.loads(summary.read_text())["framework"] == "jax"
    rows = json.loads(cli("list", "workloads", "--format", "json", cwd=tmp_path).stdout)
    assert next(r for r in rows if r["workload"] == "gpt2")["frameworks"] == ["torch", "jax"]
    res = cli("run", "--workload", "gpt2", "--framework", "jax", "--submission", "lion", "--data-dir",
              str(data_dir), cwd=tmp_path)
    assert res.returncode == 2 and "has no jax form" in res.stderr


def test_resumed_jax_trial_ends_with_the_uninterrupted_eval_history(data_dir, tmp_path):
    cfg = jax_config(data_dir, submission="adan", max_steps=12, eval_period_steps=4, seed=1)
    reference, _ = execute(cfg.model_copy(update={"results_dir": tmp_path / "a"}))
    folder = tmp_path / "b" / "trial"
    calls = {"n": 0}

    def at_step_6() -> bool:
        calls["n"] += 1
        return calls["n"] == 7

    with pytest.raises(TrialSuspended):
        execute(cfg, trial_dir=folder, resumable=True, suspend=at_step_6)
    resumed, _ = execute(cfg, trial_dir=folder, resumable=True, suspend=lambda: False)
    assert resumed["requeues"] == 1 and resumed["final_metrics"] == reference["final_metrics"]


@pytest.mark.xdist_group("exclusive")
def test_data_parallel_over_two_devices_matches_one(data_dir, tmp_path):
    """The batch split over 2 (forced host) devices: the same losses as on one device."""
    script = textwrap.dedent(f"""
        import json, sys

        from algobench.events import Ended, TrainLog
        from algobench.runner import run_trial
        from algobench.specs import RunOptions, TrialConfig
        import jax
        cfg = TrialConfig(workload="gpt2", size="smoke", submission="adamw", framework="jax", seed=0,
                          data_dir={str(data_dir)!r}, options=RunOptions(device="cpu", max_steps=6, log_every_steps=2,
                                                                   eval_period_steps=6, budget_s=1e5))
        events = list(run_trial(cfg))
        print(json.dumps({{"devices": len(jax.devices()), "backend": events[0].backend["device"],
                          "losses": [e.loss for e in events if isinstance(e, TrainLog)],
                          "val": events[-1].final_metrics["val_loss"]}}))
    """)
    out = {}
    for n in (1, 2):
        env = os.environ | {"XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"}
        res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                             cwd=Path(__file__).parent.parent, timeout=600)
        assert res.returncode == 0, res.stderr[-2000:]
        out[n] = json.loads(res.stdout.strip().splitlines()[-1])
    assert out[2]["devices"] == 2 and out[2]["backend"] == "cpu x2"
    np.testing.assert_allclose(out[2]["losses"], out[1]["losses"], rtol=1e-4)
    assert out[2]["val"] == pytest.approx(out[1]["val"], rel=1e-4)


# --- the same submission follows the same curve, and reaches the smoke target, in both frameworks ---

CURVE_STEPS, CURVE_EVERY, CURVE_TOLERANCE = 100, 25, 0.1


@pytest.mark.slow
def test_adamw_follows_the_torch_curve_in_jax(data_dir):
    """AdamW's defaults (seed 1) on gpt2 for 100 steps, in torch and in JAX: the val losses at every
    25th step agree within 0.1. The weights are drawn apart (the same distributions, not the same
    numbers) and the batches are the same, so the curves are compared, not the digits. Measured
    (val loss 6.95 at init, 4.46 at step 100): JAX against torch within 0.012 at seed 1 and 0.052
    at seed 2 (torch's own seeds 1 and 2 are 0.04 apart); AdamW at twice its learning rate is 0.19
    off at step 25, at half of it 0.37. So a wrong learning rate, schedule or warm-up fails this;
    beta2 0.9 for 0.95 (0.02 off) or weight decay does not show in 100 steps."""
    curves = {}
    for framework in ("torch", "jax"):
        cfg = jax_config(data_dir, seed=1, max_steps=CURVE_STEPS, eval_period_steps=CURVE_EVERY)
        events = list(run_trial(cfg.model_copy(update={"framework": framework})))
        assert events[-1].status == "not_reached", events[-1].reason
        curves[framework] = {e.step: e.metrics["val_loss"] for e in events if isinstance(e, Evaluated)}
    assert sorted(curves["jax"]) == sorted(curves["torch"]) == list(range(CURVE_EVERY, CURVE_STEPS + 1, CURVE_EVERY))
    gaps = {step: abs(curves["jax"][step] - curves["torch"][step]) for step in curves["jax"]}
    assert max(gaps.values()) <= CURVE_TOLERANCE, (curves, gaps)
    assert curves["jax"][CURVE_STEPS] < 4.6, curves


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.parametrize("name,max_steps", [("gpt2", 800), ("vit", 1_800)])
def test_adamw_reaches_the_smoke_target_in_jax(name, max_steps, data_dir):
    """Steps, not seconds, bound this test (a loaded machine stays reproducible): the budget is lifted.
    The torch half of this comparison is the torch target tests (gpt2: test_cli.py's quickstart
    test, vit: test_vit.py), which the suite runs anyway. Both JAX runs are `long` (run with
    --long): JAX on a CPU takes 2-3x torch's time per step (gpt2: 350 steps, ~110 s of a 2-core
    machine; vit: 1,250 steps, 160 s). The default suite covers them in parts: the first 100 steps
    of gpt2's curve against torch's (test_adamw_follows_the_torch_curve_in_jax), the init
    (test_jax_init_draws_what_torch_draws), the loss, gradients and eval metrics on the same weights
    (test_jax_model_matches_torch_loss_and_gradients) and the optax updates."""
    ensure_smoke(name, data_dir)
    cfg = jax_config(data_dir, workload=name, seed=1, max_steps=max_steps, eval_period_steps=None, budget_s=3_600)
    events = list(run_trial(cfg))
    end, evals = events[-1], [e for e in events if isinstance(e, Evaluated)]
    assert isinstance(end, Ended) and end.status == "reached", (end.reason, evals[-1].metrics if evals else None)
