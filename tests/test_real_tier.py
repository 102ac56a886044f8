"""The real benchmark tier on CPU: every small and full preset prepares tiny data in its real
format (tests/realdata.py) with `data prepare`'s code, then runs one training step and an
evaluation through `run_trial`, the function a cluster job calls: the preset's own model,
loaders (with worker processes), augmentation and evaluation.

What is changed, so that a CPU runs it in seconds: the batch (1-2 examples, `--batch-size`), the
evaluation's size (a few examples, batches of 1-2: the tiny data hold no more) and the loader
workers (2). The models are the presets' own, at their full sizes and sequence lengths.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path

import pytest

from algobench.specs import RunOptions, TrialConfig
from tests import realdata
from tests.helpers import run
from workloads import WORKLOADS

pytestmark = pytest.mark.slow

BASES = ("gpt2", "vit", "bert", "gnn", "tts", "detr")
SIZES = ("small", "full")
BATCH = {("gpt2", "full"): 1, ("detr", "full"): 1}  # the rest: 2


def _prepare(name: str, size: str, root: Path) -> Path:
    """`data prepare <name> --size <size>` on the real-format source; returns the data folder."""
    spec, data_dir = WORKLOADS.get(name), root / "data"
    if name == "gpt2":
        spec.data.prepare(size, data_dir, shards=realdata.fineweb_shards(root / "fineweb10B"))
    elif name == "vit":
        spec.data.prepare(size, data_dir, source=realdata.imagenet_folders(root / "imagenet"), workers=1)
    elif name == "bert":
        spec.data.prepare(size, data_dir, source=realdata.wikipedia_dump(root / "enwiki-pages-articles.xml.bz2"))
    elif name == "gnn":
        spec.data.prepare(size, data_dir, source=realdata.molpcba(root / "pcba"))
    elif name == "detr":
        spec.data.prepare(size, data_dir, source=realdata.coco_2017(root / "coco"))
    elif name == "tts":
        # full reads LJSpeech; small synthesizes 4,000 clips with espeak-ng into the same
        # LJSpeech layout, then builds the same features: here from the generated LJSpeech
        spec.data.prepare("full", data_dir, source=realdata.ljspeech(root / "LJSpeech-1.1"))
        if size == "small":
            shutil.copytree(data_dir / "tts" / "full", data_dir / "tts" / "small")
    assert spec.data.is_ready(size, data_dir)
    return data_dir


def _small_eval(name: str, config):
    """The preset's config with an evaluation the tiny data can hold, and 2 loader workers."""
    if name == "gpt2":
        return config.model_copy(update={"eval_tokens": config.model.block_size, "eval_batch_size": 1})
    if name == "vit":
        return config.model_copy(update={"eval_examples": 3, "eval_batch_size": 2, "loader_workers": 2})
    if name == "bert":
        return config.model_copy(update={"eval_rows": 4, "eval_batch_size": 2})
    if name in ("gnn", "tts"):
        return config.model_copy(update={"eval_batch_size": 2})
    if name == "detr":
        return config.model_copy(update={"data": config.data.model_copy(update={"eval_batch_size": 1,
                                                                               "loader_workers": 2})})
    raise KeyError(name)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", BASES)
def test_preset_takes_a_training_step_and_an_eval_on_cpu(name, size, tmp_path, monkeypatch):
    data_dir = _prepare(name, size, tmp_path)
    spec = WORKLOADS.get(name)
    preset = spec.presets[size]
    tiny_eval = dataclasses.replace(spec, presets={**spec.presets, size: preset.model_copy(
        update={"config": _small_eval(name, preset.config)})})
    get = WORKLOADS.get
    monkeypatch.setattr(WORKLOADS, "get", lambda n: tiny_eval if n == name else get(n))

    batch = BATCH.get((name, size), 2)
    evals, end = run(TrialConfig(workload=name, size=size, submission="adamw", seed=0, data_dir=data_dir,
                                 options=RunOptions(device="cpu", max_steps=1, eval_period_steps=1, batch_size=batch,
                                                    budget_s=1e6)))
    assert end.status != "failed", f"{end.reason}\n{end.traceback}"
    assert end.steps == 1 and len(evals) == 1
    metrics = end.final_metrics
    assert metrics and all(v is not None and math.isfinite(v) for v in metrics.values()), metrics
    assert set(spec.presets[size].config.model_dump()) == set(tiny_eval.presets[size].config.model_dump())
    assert tiny_eval.presets[size].config.model == preset.config.model  # the preset's own model
    assert end.extra["train_flops_per_step"] == spec.cost(preset).train_flops_per_example * batch
