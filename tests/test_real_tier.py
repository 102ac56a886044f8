"""The real benchmark tier on CPU: every small and full preset prepares tiny data in its real
format (tests/realdata.py) with `data prepare`'s code, then runs one training step and an
evaluation through `run_trial`, the function a cluster job calls: the preset's own model,
loaders (with worker processes), augmentation and evaluation.

What is changed, so that a CPU runs it in seconds: the batch (1-2 examples, `--batch-size`), the
evaluation's size (a few examples, batches of 1-2: the tiny data hold no more) and the loader
workers (2). The models are the presets' own, at their full sizes and sequence lengths.
"""

from __future__ import annotations

import math

import pytest

from algobench.specs import RunOptions, TrialConfig
from tests import realdata
from tests.helpers import run
from workloads import WORKLOADS

pytestmark = pytest.mark.slow

BASES = ("gpt2", "vit", "bert", "gnn", "tts", "detr")
SIZES = ("small", "full")
BATCH = {("gpt2", "full"): 1, ("detr", "full"): 1}  # the rest: 2


# gpt2's two presets are stepped and evaluated by tests/test_gpu_check.py's dry run of
# benchmarks/gpu_check.py (the same framework, workload and submission code, its GPT-2 124M step
# the slowest here: 33 s), which asserts what this test does of them.
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", [name for name in BASES if name != "gpt2"])
def test_preset_takes_a_training_step_and_an_eval_on_cpu(name, size, tmp_path):
    data_dir = realdata.prepare(name, size, tmp_path)
    preset = WORKLOADS.get(name).presets[size]
    batch = BATCH.get((name, size), 2)
    with realdata.tiny_eval(name, size) as spec:
        evals, end = run(TrialConfig(workload=name, size=size, submission="adamw", seed=0, data_dir=data_dir,
                                     options=RunOptions(device="cpu", max_steps=1, eval_period_steps=1,
                                                        batch_size=batch, budget_s=1e6)))
    assert end.status != "failed", f"{end.reason}\n{end.traceback}"
    assert end.steps == 1 and len(evals) == 1
    metrics = end.final_metrics
    assert metrics and all(v is not None and math.isfinite(v) for v in metrics.values()), metrics
    assert spec.presets[size].config.model == preset.config.model  # the preset's own model
    assert end.extra["train_flops_per_step"] == spec.cost(preset).train_flops_per_example * batch
