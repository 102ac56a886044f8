"""The timed runner: stopping rules, failures, determinism, the clock."""

from __future__ import annotations

import gc
import inspect
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from algobench import checkpoint as ckpt
from algobench import submission as submission_lib
from algobench.events import Ended
from algobench.runner import run_trial
from workloads import WORKLOADS
from tests.helpers import config, run


def write_submission(tmp_path, body: str, name: str = "custom.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


ADAMW_BASE = """
    import torch
    from algobench.schedules import warmup_cosine
    HPARAMS = {"learning_rate": 1e-3}
    def make_optimizer(*, model, hparams, workload):
        return torch.optim.AdamW(model.parameters(), lr=hparams.learning_rate)
    def lr_schedule(*, step, step_hint, hparams):
        return hparams.learning_rate
"""


def test_same_seed_gives_identical_eval_history(data_dir):
    first, _ = run(config(data_dir, "adan", seed=1, max_steps=20))
    second, _ = run(config(data_dir, "adan", seed=1, max_steps=20))
    assert [(e.step, e.metrics) for e in first] == [(e.step, e.metrics) for e in second]
    other, _ = run(config(data_dir, "adan", seed=2, max_steps=20))
    assert [e.metrics for e in other] != [e.metrics for e in first]


def test_max_steps_ends_not_reached_with_final_eval(data_dir):
    evals, end = run(config(data_dir, max_steps=15, eval_period_steps=10))
    assert end.status == "not_reached" and end.reason == "max steps" and end.steps == 15
    assert [e.step for e in evals] == [10, 15]
    assert set(evals[-1].metrics) == {"val_loss", "test_loss"}


def test_budget_ends_the_trial(data_dir):
    _, end = run(config(data_dir, max_steps=None, budget_s=0.5, eval_period_steps=1000))
    assert end.status == "not_reached" and end.reason == "budget exhausted"
    assert 0.5 <= end.submission_time_s < 5


def test_target_stops_at_first_eval_meeting_it(data_dir, monkeypatch):
    spec = WORKLOADS.get("gpt2")
    easy = spec.presets["smoke"].target.model_copy(update={"value": 6.5})
    monkeypatch.setitem(spec.presets, "smoke", spec.presets["smoke"].model_copy(update={"target": easy}))
    evals, end = run(config(data_dir, max_steps=200, eval_period_steps=5))
    assert end.status == "reached" and end.steps_to_target == evals[-1].step == end.steps
    assert end.time_to_target_s == pytest.approx(evals[-1].submission_time_s)
    assert all(e.metrics["val_loss"] > 6.5 for e in evals[:-1])


def test_raising_submission_fails_with_reason_and_traceback(data_dir, tmp_path):
    path = write_submission(tmp_path, ADAMW_BASE + """
    def lr_schedule(*, step, step_hint, hparams):
        if step == 3:
            raise RuntimeError("boom at step 3")
        return hparams.learning_rate
    """)
    _, end = run(config(data_dir, path))
    assert end.status == "failed" and end.reason == "exception: RuntimeError: boom at step 3"
    assert "lr_schedule" in end.traceback and end.steps == 3


def test_nan_parameters_fail_as_diverged(data_dir, tmp_path):
    path = write_submission(tmp_path, """
    import torch
    def init_optimizer_state(*, workload, model_params, model_state, hyperparameters, rng):
        return {}
    def update_params(*, workload, current_param_container, current_params_types, model_state,
                      hyperparameters, batch, loss_type, optimizer_state, eval_results, global_step, rng):
        with torch.no_grad():
            for p in current_param_container.parameters():
                p.fill_(float("nan"))
        return optimizer_state, current_param_container, model_state
    """)
    _, end = run(config(data_dir, path, max_steps=50, eval_period_steps=5))
    assert end.status == "failed" and end.reason == "diverged: non-finite parameters at step 5"


def test_nan_loss_fails_at_the_next_loss_printout(data_dir):
    _, end = run(config(data_dir, "adamw", hparams={"learning_rate": 1e6, "grad_clip": 0.0},
                        max_steps=200, eval_period_steps=100, log_every_steps=5))
    assert end.status == "failed" and end.reason.startswith("diverged: non-finite")


def test_training_complete_ends_after_a_final_eval(data_dir, tmp_path):
    path = write_submission(tmp_path, ADAMW_BASE + """
    from algobench.errors import TrainingComplete
    def lr_schedule(*, step, step_hint, hparams):
        if step == 7:
            raise TrainingComplete()
        return hparams.learning_rate
    """)
    evals, end = run(config(data_dir, path, max_steps=50, eval_period_steps=100))
    assert end.status == "not_reached" and end.reason.startswith("training complete")
    assert evals[-1].step == end.steps == 8


def test_evaluation_is_off_the_clock(data_dir, monkeypatch):
    from workloads.gpt2 import Gpt2Workload

    real = Gpt2Workload.evaluate

    def slow_evaluate(self, model, split):
        time.sleep(0.3)
        return real(self, model, split)

    monkeypatch.setattr(Gpt2Workload, "evaluate", slow_evaluate)
    evals, end = run(config(data_dir, max_steps=9, eval_period_steps=3))
    assert len(evals) == 3 and end.eval_time_s >= 6 * 0.3
    # the three evals slept 1.8 s; none of it may show in submission time
    assert end.submission_time_s < end.wall_time_s - 1.8


def test_full_form_gets_algoperf_arguments(data_dir, tmp_path):
    path = write_submission(tmp_path, """
    import numpy as np, torch
    SEEN = []
    def get_batch_size(workload_name):
        assert workload_name == "gpt2"
        return 8
    def init_optimizer_state(*, workload, model_params, model_state, hyperparameters, rng):
        return {"opt": torch.optim.SGD(model_params.parameters(), lr=0.1)}
    def update_params(*, workload, current_param_container, current_params_types, model_state,
                      hyperparameters, batch, loss_type, optimizer_state, eval_results, global_step, rng,
                      train_state):
        SEEN.append((global_step, rng.dtype, rng.shape, batch["inputs"].shape[0], len(eval_results),
                     dict(train_state)["global_step"], set(current_params_types.values())))
        opt = optimizer_state["opt"]
        opt.zero_grad()
        loss = workload.loss(current_param_container, batch)
        loss.backward()
        opt.step()
        return optimizer_state, current_param_container, model_state
    """)
    sub = submission_lib.load(path)
    events = list(run_trial(config(data_dir, path, max_steps=6, eval_period_steps=3), sub))
    assert isinstance(events[-1], Ended) and events[-1].status == "not_reached"
    seen = sub.module.SEEN
    assert [s[0] for s in seen] == list(range(6))
    assert all(s[1] == "int32" and s[2] == (2,) and s[3] == 8 for s in seen)
    assert [s[4] for s in seen] == [0, 0, 0, 1, 1, 1]
    assert seen[0][6] == {"weight", "bias", "norm", "embedding"}


PREPARE_COUNTING = """
import dataclasses
import sys
import time
from pathlib import Path
from algobench.workload import ensure_data
from workloads import WORKLOADS

spec = WORKLOADS.get("vit")
prepare = spec.data.prepare


def counted(size, data_dir, **options):
    with open(sys.argv[2], "a") as log:
        log.write("prepared\\n")
    time.sleep(3)  # longer than the processes' start-up spread: without the lock, all three get here
    return prepare(size, data_dir, **options)


spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, prepare=counted))
ensure_data(spec, "smoke", Path(sys.argv[1]))
print(spec.data.is_ready("smoke", Path(sys.argv[1])))
"""


def test_processes_that_start_together_prepare_the_smoke_data_once(tmp_path):
    """Three processes ask for vit's smoke data in one empty folder at once (as `tune --jobs 3`
    or an array job does): one prepares it under the lock, the others find it ready."""
    script = tmp_path / "ensure.py"
    script.write_text(PREPARE_COUNTING)
    log = tmp_path / "prepared.log"
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "data"), str(log)], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).parent.parent)
             for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-1500:] for _, err in outs]
    assert [out.strip() for out, _ in outs] == ["True"] * 3
    assert log.read_text().splitlines() == ["prepared"]


def test_the_batch_generator_is_closed_when_the_trial_ends(data_dir, monkeypatch):
    """At the trial's end, not when the garbage collector next runs (the trial object sits in a
    cycle): an image workload's loader workers would prefetch on, and a detr full loader's took
    10 s to stop, which landed inside the next test (or the next trial of an in-process study)."""
    generators = []
    wrap = ckpt.CountingIterator.__init__

    def spy(self, batches, drawn=0):
        generators.append(batches)
        wrap(self, batches, drawn)

    monkeypatch.setattr(ckpt.CountingIterator, "__init__", spy)
    gc.disable()  # only run_trial may close it
    try:
        _evals, end = run(config(data_dir, max_steps=3, eval_period_steps=3))
        (batches,) = generators
        state = inspect.getgeneratorstate(batches)
    finally:
        gc.enable()
    assert end.reason == "max steps", end.traceback
    assert state == inspect.GEN_CLOSED
