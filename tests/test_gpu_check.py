"""benchmarks/gpu_check.py's dry run on CPU: every part runs and the JSON table is complete."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workloads import WORKLOADS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run_on_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # gpt2 only: every part of the script (GPT-2 124M's micro-batch probe, a small preset, JAX vs torch,
    # the table and the JSON); every other small and full preset's step runs in tests/test_real_tier.py,
    # gpt2's only here.
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--steps", "1",
                          "--warmup", "0", "--workloads", "gpt2", "--out", str(out)],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert not [r for r in rows if "error" in r], [r["error"] for r in rows if "error" in r]
    small = {r["workload"] for r in rows if r["size"] == "small" and r["framework"] == "torch"}
    assert small == {"gpt2"}
    gpt2 = next(r for r in rows if r["workload"] == "gpt2" and r["size"] == "full")
    assert gpt2["batch"] == 1 and gpt2["step_ms"] > 0 and gpt2["achieved_tflops"] > 0
    # what tests/test_real_tier.py asserts of the other presets, for gpt2's two (which it leaves to this run)
    spec = WORKLOADS.get("gpt2")
    for row in (r for r in rows if r["workload"] == "gpt2" and r["framework"] == "torch"):
        metrics = row["eval_metrics"]
        assert set(metrics) == {"loss"} and math.isfinite(metrics["loss"]), row  # the val split's
        per_example = spec.cost(spec.presets[row["size"]]).train_flops_per_example
        assert row["achieved_tflops"] * 1e12 == pytest.approx(per_example * row["batch"] / (row["step_ms"] / 1e3))
    assert all(r["mfu"] is None for r in rows)  # no peak for a CPU
    assert all(r["step_ms"] > 0 and r["examples_per_s"] > 0 for r in rows)
    assert "workload | size | framework" in res.stdout and result["skipped"] in ([], ["jax vs torch: jax is not installed"])
