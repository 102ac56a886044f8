"""The library's commands and measurements: `plot schedule`, `list submissions`' optimizer-state
column, the state-size walk and the gradient-norm recorder behind the refined schedule."""

from __future__ import annotations

import json

import pytest
import torch

from algobench import submission as submission_lib
from algobench.library import record_grad_norms, state_bytes, state_bytes_per_param
from tests.helpers import cli

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name,low,high", [
    ("adamw", 7.99, 8.01), ("adamw_8bit", 1.9, 2.2), ("sgd_sai", 3.99, 4.01), ("lion", 3.99, 4.01),
    ("schedule_free_adamw", 7.99, 8.01), ("diffgrad", 11.99, 12.01), ("sgd_nesterov", 3.99, 4.01),
])
def test_state_bytes_per_param_on_the_gpt2_smoke_model(name, low, high):
    assert low <= state_bytes_per_param(submission_lib.load(name)) <= high


def test_state_bytes_counts_each_storage_once_and_not_the_parameters():
    model = torch.nn.Linear(4, 2)
    buf = torch.zeros(10)
    state = {"opt": [buf, buf], "nested": {"again": buf, "weight": model.weight, "view": model.weight[0]},
             "other": (torch.zeros(3, dtype=torch.uint8), 7, "text")}
    assert state_bytes(state, model) == 10 * 4 + 3


def test_state_measurements_are_cached_per_file_content(tmp_path, monkeypatch):
    import dataclasses

    import algobench.library as library

    calls = []
    monkeypatch.setattr(library, "state_bytes_per_param", lambda sub: calls.append(sub.sha256) or 4.0)
    sub, cache = submission_lib.load("lion"), tmp_path / "cache.json"
    assert library.cached_state_bytes_per_param(sub, cache=cache) == 4.0
    assert library.cached_state_bytes_per_param(sub, cache=cache) == 4.0 and len(calls) == 1
    edited = dataclasses.replace(sub, sha256="0" * 64)
    assert library.cached_state_bytes_per_param(edited, cache=cache) == 4.0 and len(calls) == 2
    assert len(json.loads(cache.read_text())) == 1  # the old file's entry is dropped


def test_plot_schedule_writes_a_figure(tmp_path):
    out = tmp_path / "wsd.png"
    res = cli("plot", "schedule", "wsd", "--steps", "200", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert out.read_bytes().startswith(PNG)
    res = cli("plot", "schedule", "wsd", "--steps", "200", "--out", str(tmp_path / "wsd.txt"))
    assert res.returncode == 2 and res.stderr.count("error:") == 1 and "Traceback" not in res.stderr
    assert ".png, .svg, .pdf" in " ".join(res.stderr.split())
    res = cli("plot", "schedule", "cosine", "--steps", "200", "--out", str(out))
    assert res.returncode == 2 and "warmup_cosine" in res.stderr


def test_refined_schedule_from_recorded_gradient_norms(tmp_path, data_dir):
    """Record an earlier run's gradient norms with the harness's simple-form update, write them in
    the documented format, and plot the refined schedule derived from them."""
    frame = record_grad_norms("adamw", steps=6, data_dir=data_dir)
    assert list(frame.columns) == ["step", "grad_norm", "grad_norm_l1", "train_loss"]
    assert (frame.grad_norm > 0).all() and (frame.grad_norm_l1 > frame.grad_norm).all()
    assert frame.train_loss.iloc[0] > 6.0  # an untrained model on a 1,024-token vocabulary
    path = tmp_path / "norms.parquet"
    frame.to_parquet(path)
    out = tmp_path / "refined.svg"
    res = cli("plot", "schedule", "refined", "--steps", "50", "--grad-norms", str(path), "--tau", "0",
              "--norm", "l1", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert out.read_text().lstrip().startswith("<?xml")
    res = cli("plot", "schedule", "refined", "--steps", "50", "--out", str(out))
    assert res.returncode == 2 and "--grad-norms" in res.stderr


def test_list_submissions_reports_state_bytes():
    res = cli("list", "submissions", "--format", "json")
    assert res.returncode == 0, res.stderr
    rows = {r["submission"]: r for r in json.loads(res.stdout)}
    assert rows["adamw"]["state_bytes_per_param"] == pytest.approx(8.0, abs=0.01)
    assert 1.9 <= rows["adamw_8bit"]["state_bytes_per_param"] <= 2.2
    assert rows["schedule_free_adamw"]["form"] == "full" and rows["sgd_sai"]["form"] == "simple"


def test_list_submissions_table_has_the_state_column(monkeypatch):
    """The table view, in process, with the (tested above) measurement replaced by a constant."""
    from typer.testing import CliRunner

    import algobench.library
    from algobench.cli import app

    monkeypatch.setattr(algobench.library, "cached_state_bytes_per_param",
                        lambda sub: 4.125 if sub.name == "lion" else 8.0)
    res = CliRunner().invoke(app, ["list", "submissions"])
    assert res.exit_code == 0, res.output
    lion = next(line for line in res.output.splitlines() if "lion" in line)
    assert "4.12" in lion and "simple" in lion
