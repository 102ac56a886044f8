"""Times a researcher can publish: the refined crossing, contention, overrides recorded."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from algobench import contention
from algobench import runner as runner_lib
from algobench.events import Evaluated
from algobench.layout import validate_summary
from algobench.runner import run_trial
from algobench.specs import RunOptions, Target, TrialConfig
from algobench.trial import execute
from workloads import WORKLOADS


def gpt2(data_dir, tmp_path, **options) -> TrialConfig:
    return TrialConfig(workload="gpt2", size="smoke", submission="adamw", seed=0, data_dir=data_dir,
                       results_dir=tmp_path / "results",
                       options=RunOptions(device="cpu", budget_s=1e5, log_every_steps=10, **options))


def with_target(monkeypatch, value: float) -> None:
    spec = WORKLOADS.get("gpt2")
    preset = spec.presets["smoke"]
    monkeypatch.setitem(spec.presets, "smoke", preset.model_copy(update={
        "target": Target(metric="val_loss", value=value, mode="min")}))


def test_refined_crossing_lies_inside_the_interval_and_equals_a_search_over_every_snapshot(
        data_dir, tmp_path, monkeypatch, one_thread):
    # The loss at the two evals, with a target no run meets.
    with_target(monkeypatch, 0.0)
    evals = [e for e in run_trial(gpt2(data_dir, tmp_path, max_steps=40, eval_period_steps=20))
             if isinstance(e, Evaluated)]
    v20, v40 = (e.metrics["val_loss"] for e in evals)
    assert v40 < v20
    with_target(monkeypatch, (v20 + v40) / 2)  # crossed somewhere between the evals at steps 20 and 40

    searched = {}
    crossing = runner_lib.Refiner.crossing

    def brute_force_first(self, t):
        """Every snapshot evaluated, in order; then the refiner's own (bisection) answer."""
        current = t.framework.snapshot(t.model)
        met = []
        for step, at_s, weights in self.snaps:
            t.model = t.framework.load_snapshot(t.model, weights)
            met.append((step, at_s, t.preset.target.met({f"val_{k}": v for k, v in t.workload.evaluate(t.model, "val").items()})))
        t.model = t.framework.load_snapshot(t.model, current)
        first = next(((s, a) for s, a, ok in met if ok), (t.state.step, t.clock.elapsed_s))
        searched.update(snapshots=[s for s, _, _ in met], first=first)
        return crossing(self, t)

    monkeypatch.setattr(runner_lib.Refiner, "crossing", brute_force_first)
    summary, _ = execute(gpt2(data_dir, tmp_path, max_steps=60, eval_period_steps=20))
    assert summary["status"] == "reached" and summary["steps_to_target"] == 40
    assert 20 < summary["refined_steps_to_target"] < 40, (summary["refined_steps_to_target"], searched)
    assert (summary["refined_steps_to_target"], summary["refined_time_to_target_s"]) == searched["first"]
    assert len(searched["snapshots"]) <= runner_lib.SNAPSHOTS_PER_INTERVAL
    assert all(20 < s < 40 for s in searched["snapshots"])
    assert summary["refined_time_to_target_s"] < summary["time_to_target_s"]
    assert summary["refine_time_s"] > 0 and summary["refine_evals"] >= 1
    validate_summary(summary)


def test_the_snapshot_stride_keeps_at_most_eight_and_spreads_them(data_dir, tmp_path, monkeypatch, one_thread):
    """100 steps before the first eval: the kept snapshots are evenly spaced, at most 8."""
    kept = {}
    interval_done = runner_lib.Refiner.interval_done

    def record(self, t, steps):
        kept["steps"] = [s for s, _, _ in self.snaps]
        return interval_done(self, t, steps)

    monkeypatch.setattr(runner_lib.Refiner, "interval_done", record)
    with_target(monkeypatch, 0.0)
    list(run_trial(gpt2(data_dir, tmp_path, max_steps=101, eval_period_steps=100)))  # the eval at 100 ends the interval
    steps = kept["steps"]
    assert 4 <= len(steps) <= 8 and len(set(b - a for a, b in zip(steps, steps[1:]))) == 1, steps


def test_overrides_are_recorded(data_dir, tmp_path, one_thread):
    summary, folder = execute(gpt2(data_dir, tmp_path, max_steps=4, eval_period_steps=2))
    assert summary["overrides"] == {"budget_s": 1e5, "eval_period_steps": 2, "max_steps": 4}


def test_contention_verdict_reads_the_run_queue_against_the_cores():
    state = {"queue_sum": 30.0, "queue_samples": 10, "queue_max": 4, "load_avg_max": 3.5,
             "other_gpu_processes": None}
    assert contention.verdict(state, cores=2)["contended"] is True
    assert contention.verdict(state, cores=4)["contended"] is False
    assert contention.verdict({**state, "other_gpu_processes": 1}, cores=4)["contended"] is True
    assert contention.verdict({**state, "queue_samples": 0, "queue_sum": 0.0}, cores=2)["contended"] is False


def busy_loops(n: int, seconds: float) -> list[subprocess.Popen]:
    """`n` processes spinning on a core each, each stopping by itself after `seconds`."""
    code = f"import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass\n"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]


@pytest.mark.xdist_group("exclusive")
def test_a_trial_beside_busy_processes_is_contended_and_one_alone_is_not(data_dir, tmp_path, one_thread):
    cores = contention.cpu_count()
    busy = busy_loops(cores, seconds=90)
    try:
        time.sleep(1.0)
        loaded, _ = execute(gpt2(data_dir, tmp_path, max_steps=20, eval_period_steps=5))
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    assert loaded["contention"]["contended"] is True, loaded["contention"]
    assert loaded["contention"]["cpu_count"] == cores
    assert loaded["contention"]["run_queue_mean"] > cores
    if os.environ.get("ALGOBENCH_SHARED_MACHINE"):
        pytest.skip("ALGOBENCH_SHARED_MACHINE: other work runs here, an idle trial cannot be had")
    time.sleep(2.0)
    alone, _ = execute(gpt2(data_dir, tmp_path, max_steps=20, eval_period_steps=5))
    assert alone["contention"]["contended"] is False, alone["contention"]


@pytest.mark.xdist_group("exclusive")
def test_run_queue_counts_other_threads():
    before = contention.runnable_threads()
    busy = busy_loops(2, seconds=30)
    try:
        time.sleep(0.5)
        during = max(contention.runnable_threads() for _ in range(20))
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    assert before is not None and during >= 2
