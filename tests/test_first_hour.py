"""A new user's first hour: every bad input is one line with exit 2, no traceback and no trial
folder (or the failed trial the README promises); a piped run shows its progress."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from algobench.cli import main
from tests.helpers import cli

SIMPLE = '''import torch
def make_optimizer({signature}):
    {body}
def lr_schedule(*, step, step_hint, hparams):
    return 0.01
'''


def invoke(capsys, *args: str | Path) -> tuple[int, str, str]:
    """The CLI in this process, as `algobench ARGS` (an uncaught exception fails the test: a traceback)."""
    argv, sys.argv = sys.argv, ["algobench", *map(str, args)]
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    finally:
        sys.argv = argv
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def trial_folders(results: Path) -> list[Path]:
    return [p for p in results.glob("*/*/*/*") if p.is_dir()] if results.is_dir() else []


@pytest.fixture
def run_args(data_dir, tmp_path):
    return ["run", "-w", "gpt2", "--data-dir", data_dir, "--results-dir", tmp_path / "res", "--max-steps", "2"]


@pytest.mark.parametrize("hparams,fragment", [
    ({"learning_rate": -1}, "learning_rate must be a finite number > 0, got -1"),
    ({"learning_rate": float("nan")}, "learning_rate must be a finite number > 0, got nan"),
    ({"learning_rate": float("inf")}, "learning_rate must be a finite number > 0, got inf"),
    ({"beta1": 1.5}, "beta1 must be a finite number in [0, 1), got 1.5"),
    ({"grad_clip": -1}, "grad_clip must be a finite number >= 0 or null (off), got -1"),
    ({"weight_decay": -1}, "weight_decay must be a finite number >= 0, got -1"),
    ({"warmup_frac": 2.0}, "warmup_frac must be a finite number in [0, 1], got 2.0"),
])
def test_hyperparameter_outside_its_range(capsys, run_args, tmp_path, hparams, fragment):
    path = tmp_path / "hp.json"
    path.write_text(json.dumps(hparams))  # (json writes NaN and Infinity, which json.loads reads back)
    code, _, err = invoke(capsys, *run_args, "-s", "adamw", "--hparams", path)
    assert_one_line(code, err, str(path), fragment)
    assert trial_folders(tmp_path / "res") == []


@pytest.mark.parametrize("option,value,fragment", [
    ("--seed", "-1", "invalid --seed -1"),
    ("--seed", "99999999999999999999", "less than 4294967296"),
    ("--budget-s", "inf", "invalid --budget-s inf: Input should be a finite number"),
    ("--budget-s", "nan", "invalid --budget-s nan"),
    ("--eval-period-s", "-3", "invalid --eval-period-s -3"),
])
def test_run_option_out_of_range(capsys, run_args, tmp_path, option, value, fragment):
    code, _, err = invoke(capsys, *run_args, "-s", "adamw", option, value)
    assert_one_line(code, err, fragment)
    assert trial_folders(tmp_path / "res") == []


def test_bad_folders(capsys, data_dir, tmp_path):
    a_file = tmp_path / "afile"
    a_file.write_text("")
    base = ["run", "-w", "gpt2", "-s", "adamw", "--max-steps", "2"]
    cases = [
        (["--data-dir", data_dir, "--results-dir", a_file], f"--results-dir {a_file}: is a file"),
        (["--data-dir", a_file, "--results-dir", tmp_path / "res"], f"--data-dir {a_file}: is a file"),
        (["--data-dir", data_dir, "--results-dir", ""], "--results-dir is empty"),
        (["--data-dir", "", "--results-dir", tmp_path / "res"], "--data-dir is empty"),
        (["--data-dir", data_dir, "--results-dir", "/proc/algobench/results"],
         "--results-dir /proc/algobench/results: cannot create it"),
    ]
    for args, fragment in cases:
        code, _, err = invoke(capsys, *base, *args)
        assert_one_line(code, err, fragment)
    assert not (tmp_path / "res").exists() and not list(Path.cwd().glob("gpt2"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine has --device cuda")
def test_device_cuda_on_a_cpu_torch(capsys, run_args):
    code, _, err = invoke(capsys, *run_args, "-s", "adamw", "--device", "cuda")
    assert_one_line(code, err, "--device cuda", "--device cpu")


def test_corrupt_shard(capsys, data_dir, tmp_path):
    data = tmp_path / "data"
    (data / "gpt2").mkdir(parents=True)
    (data / "gpt2" / "smoke").symlink_to(data_dir / "gpt2" / "smoke", target_is_directory=True)
    copy = tmp_path / "data2"
    subprocess.run(["cp", "-rL", str(data), str(copy)], check=True)
    shard = sorted((copy / "gpt2" / "smoke").glob("*val*.bin"))[0]
    shard.write_bytes(shard.read_bytes()[:100])
    code, _, err = invoke(capsys, "run", "-w", "gpt2", "-s", "adamw", "--data-dir", copy,
                          "--results-dir", tmp_path / "res", "--max-steps", "2")
    assert_one_line(code, err, shard.name)
    assert trial_folders(tmp_path / "res") == []


@pytest.mark.parametrize("name,content,fragment", [
    ("positional.py", SIMPLE.format(signature="model, hparams", body="return torch.optim.SGD(model.parameters())"),
     "write def make_optimizer(*, model, hparams, workload)"),
    ("exits.py", "import sys\nsys.exit(3)\n", "calls sys.exit(3) when imported"),
    ("notes.txt", "hello\n", "not a Python file"),
])
def test_bad_submission_file(capsys, run_args, tmp_path, name, content, fragment):
    path = tmp_path / name
    path.write_text(content)
    code, _, err = invoke(capsys, *run_args, "-s", path)
    assert_one_line(code, err, fragment)
    assert trial_folders(tmp_path / "res") == []


def test_a_folder_as_submission(capsys, run_args, tmp_path, monkeypatch):
    (tmp_path / "mine").mkdir()
    monkeypatch.chdir(tmp_path)
    code, _, err = invoke(capsys, *run_args, "-s", "mine")
    assert_one_line(code, err, "submission mine: a folder, not a built-in name")
    code, _, err = invoke(capsys, *run_args, "-s", "./mine")
    assert_one_line(code, err, "a folder without submission.py")


@pytest.mark.parametrize("body,reason", [
    ("raise RuntimeError('boom in make_optimizer')", "RuntimeError: boom in make_optimizer"),
    ("return None", "make_optimizer returned NoneType, not a torch.optim.Optimizer"),
])
def test_make_optimizer_that_fails_is_a_recorded_failed_trial(capsys, run_args, tmp_path, body, reason):
    path = tmp_path / "mine.py"
    path.write_text(SIMPLE.format(signature="*, model, hparams, workload", body=body))
    code, out, err = invoke(capsys, *run_args, "-s", path)
    assert code == 0 and "Traceback" not in err, err
    (folder,) = trial_folders(tmp_path / "res")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "failed" and reason in summary["reason"], summary["reason"]
    assert reason in " ".join(out.split())  # the panel shows the reason (and the traceback's end)
    assert len(out.splitlines()) < 30, out


def test_wrong_names_get_the_nearest(capsys, run_args):
    code, _, err = invoke(capsys, *run_args[:1], "-w", "GPT2", *run_args[3:], "-s", "adamw")
    assert_one_line(code, err, "unknown workload 'GPT2'; did you mean: gpt2")


@pytest.mark.parametrize("args,fragment", [
    (["--warmup-frac", "2"], "--warmup-frac must be a finite number in [0, 1], got 2.0"),
    (["--warmup-frac", "-0.1"], "--warmup-frac must be"),
    (["--peak-lr", "nan"], "--peak-lr must be a finite number > 0, got nan"),
    (["--steps", "0"], "--steps must be an integer >= 1"),
    (["--out", "/proc/algobench/schedule.png"], "--out /proc/algobench/schedule.png: cannot write it"),
])
def test_plot_schedule_bad_values(capsys, tmp_path, args, fragment):
    base = {"--steps": "100", "--out": str(tmp_path / "s.png")}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    code, _, err = invoke(capsys, "plot", "schedule", "warmup_cosine", *[x for kv in base.items() for x in kv])
    assert_one_line(code, err, fragment)


def test_data_prepare_bad_sources(capsys, tmp_path):
    code, _, err = invoke(capsys, "data", "prepare", "gpt2", "--size", "full", "--data-dir", tmp_path / "d",
                          "--source", tmp_path / "missing")
    assert_one_line(code, err, f"--source {tmp_path / 'missing'}: no such file or folder")
    (tmp_path / "folder").mkdir()
    code, _, err = invoke(capsys, "data", "prepare", "gpt2", "--size", "smoke", "--data-dir", tmp_path / "d",
                          "--source", tmp_path / "folder")
    assert_one_line(code, err, "data prepare gpt2 --size smoke", "Is a directory")


def test_data_prepare_offline_download(tmp_path):
    """No network (HF_HUB_OFFLINE, as on this machine): one line that says what to do instead."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", "from algobench.cli import main; main()", "data", "prepare", "gpt2",
                          "--size", "full", "--data-dir", str(tmp_path / "d")], capture_output=True, text=True,
                         env=env, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "the download failed" in res.stderr and "--source" in res.stderr


def test_runs_names_typos_and_reads_bad_summaries(capsys, tmp_path):
    folder = tmp_path / "res" / "gpt2" / "smoke" / "adamw" / "run-1"
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"schema_version": 2, "status": 3, "steps": "many"}))
    for args, fragment in [(["--status", "faild"], "unknown status 'faild'; did you mean: failed"),
                           (["--workload", "gtp2"], "unknown workload 'gtp2'; did you mean: gpt2"),
                           (["--size", "smol"], "unknown size 'smol'")]:
        code, _, err = invoke(capsys, "runs", tmp_path / "res", *args)
        assert_one_line(code, err, fragment)
    code, out, err = invoke(capsys, "runs", tmp_path / "res", "--format", "json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["status"] == "unreadable" and "invalid summary" in row["reason"]


def test_a_piped_run_prints_a_line_per_log_interval_and_eval(data_dir, tmp_path):
    """`algobench run ... | cat` (a SLURM log is no terminal either): plain progress lines."""
    res = cli("run", "-w", "gpt2", "-s", "adamw", "--max-steps", "30", "--log-every-steps", "10",
              "--eval-every-steps", "15", "--data-dir", str(data_dir), "--results-dir", str(tmp_path / "res"),
              cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    for step in (10, 20, 30):
        assert any(line.startswith(f"step {step} ") and " loss " in line and "/120 s" in line for line in lines), \
            res.stdout
    evals = [line for line in lines if line.startswith("eval @ step ")]
    assert [line.split()[3] for line in evals] == ["15", "30"], res.stdout
    assert all("val_loss" in line and "target val_loss <=" in line for line in evals)


def test_every_shipped_default_and_search_space_is_inside_the_declared_ranges():
    """The ranges are the submissions' own: no default and no search-space end falls outside them."""
    from algobench import hparam_ranges
    from algobench import submission as submission_lib

    for name in submission_lib.builtin_names():
        sub = submission_lib.load(name)
        extra = getattr(sub.module, "HPARAM_RANGES", None)
        hparam_ranges.check(sub.defaults, source=f"{name} defaults", extra=extra)
        for key, space in sub.search_space.items():
            ends = space.get("feasible_points") or [space.get("min"), space.get("max")]
            for value in ends:
                hparam_ranges.check({key: value}, source=f"{name} SEARCH_SPACE", extra=extra)
