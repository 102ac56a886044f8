"""W&B tracking with the real `wandb`, offline: what was written is read back from the run file."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pandas as pd
import pytest

from algobench import tracking

pytest.importorskip("wandb")
from wandb.proto import wandb_internal_pb2 as pb  # noqa: E402

FAKE_KEY = "0123456789abcdef0123456789abcdef01234567"  # 40 hex chars, the shape of a real key
BLOCK = 32 * 1024  # LevelDB log block
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_wandb_records(path: Path) -> list[pb.Record]:
    """Every Record of a `run-<id>.wandb` file: a 7-byte header (`:W&B`, magic u16, version u8),
    then LevelDB-log chunks (crc32 u32, length u16, type u8) in 32 KiB blocks."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    records, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # a block's tail too short for a chunk header is zero padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if crc == length == kind == 0:  # zero padding up to the next block
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + length]
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) == crc, f"bad checksum at byte {pos}"
        pos += 7 + length
        if kind == FULL:
            records.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            records.append(pending + chunk)
    parsed = []
    for raw in records:
        record = pb.Record()
        record.ParseFromString(raw)
        parsed.append(record)
    return parsed


def history_rows(records: list[pb.Record]) -> list[dict]:
    return [{".".join(item.nested_key) or item.key: json.loads(item.value_json) for item in r.history.item}
            for r in records if r.WhichOneof("record_type") == "history"]


def summary_values(records: list[pb.Record]) -> dict:
    out = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            for item in r.summary.update:
                out[".".join(item.nested_key) or item.key] = json.loads(item.value_json)
    return out


def wandb_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment: no user W&B settings, no netrc, wandb's own folders in tmp."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path / "home"), NETRC=str(tmp_path / "home" / "no-netrc"),
               WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"), WANDB_CACHE_DIR=str(tmp_path / "wandb-cache"),
               WANDB_DATA_DIR=str(tmp_path / "wandb-data"), OMP_NUM_THREADS="1", **extra)
    return env


def algobench(*args: str, env: dict, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from algobench.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def files_containing(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_offline_run_is_written_and_reads_back(tmp_path, data_dir):
    results = tmp_path / "results"
    env = wandb_env(tmp_path, WANDB_MODE="offline", WANDB_API_KEY=FAKE_KEY, WANDB_DIR=str(tmp_path / "stray"))
    res = algobench("run", "-w", "gpt2", "-s", "adan", "--max-steps", "10", "--eval-every-steps", "5",
                    "--log-every-steps", "5", "--wandb", "--wandb-project", "algobench-test",
                    "--data-dir", str(data_dir), "--results-dir", str(results), env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    (trial,) = results.glob("gpt2/smoke/adan/run-*")
    assert (trial / "summary.json").is_file()
    (run_dir,) = (trial / "wandb").glob("offline-run-*")
    (run_file,) = run_dir.glob("run-*.wandb")
    assert "wandb sync" in res.stdout and str(run_dir.name) in " ".join(res.stdout.split()).replace(" ", "")

    records = read_wandb_records(run_file)
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.project == "algobench-test" and run.display_name == trial.name and run.job_type == "run"
    assert {"workload:gpt2", "size:smoke", "submission:adan", "ruleset:external"} <= set(run.tags)
    config = {u.key: json.loads(u.value_json) for u in run.config.update}
    assert config["hparams"]["learning_rate"] == 0.01 and config["seed"] == 0
    assert config["preset"]["target"] == {"metric": "val_loss", "value": 3.8, "mode": "min"}
    assert config["versions"]["torch"]

    rows = history_rows(records)
    train = pd.read_parquet(trial / "train.parquet")
    evals = pd.read_parquet(trial / "evals.parquet")
    logged_train = [(r["step"], r["train/loss"]) for r in rows if "train/loss" in r]
    assert logged_train == list(zip(train["step"], train["train_loss"]))
    assert [s for s, _ in logged_train] == [5, 10]
    logged_evals = [(r["step"], r["submission_time_s"], r["eval/val_loss"]) for r in rows if "eval/val_loss" in r]
    assert logged_evals == list(zip(evals["step"], evals["submission_time_s"], evals["val_loss"]))

    summary = summary_values(records)
    local = json.loads((trial / "summary.json").read_text())
    assert summary["status"] == local["status"] == "not_reached"
    assert summary["reason"] == "max steps" and summary["time_to_target_s"] is None and summary["steps"] == 10
    assert any(r.WhichOneof("record_type") == "exit" for r in records)

    sync = subprocess.run(["wandb", "sync", "--dry-run", str(trial / "wandb")], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    listed = sync.stdout + sync.stderr
    assert "Would sync 1 run" in listed and run_file.name in listed, listed

    assert not files_containing(tmp_path, FAKE_KEY) and FAKE_KEY not in res.stdout + res.stderr
    assert not (tmp_path / "stray").exists()  # written into the trial folder, not WANDB_DIR


def test_wandb_failure_is_a_warning_and_the_trial_completes(tmp_path, data_dir):
    """Online with a key but no reachable server (a refused port): init fails, the trial goes on.
    W&B is switched on by the environment (ALGOBENCH_WANDB=1) instead of --wandb."""
    results = tmp_path / "results"
    env = wandb_env(tmp_path, WANDB_API_KEY=FAKE_KEY, WANDB_BASE_URL="http://127.0.0.1:9",
                    WANDB_INIT_TIMEOUT="3", ALGOBENCH_WANDB="1")
    res = algobench("run", "-w", "gpt2", "-s", "adan", "--max-steps", "4", "--eval-every-steps", "2",
                    "--data-dir", str(data_dir), "--results-dir", str(results), env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    out = " ".join((res.stdout + res.stderr).split())
    assert "warning: W&B init failed" in out and "local results are complete" in out
    (trial,) = results.glob("gpt2/smoke/adan/run-*")
    local = json.loads((trial / "summary.json").read_text())
    assert local["status"] == "not_reached" and local["steps"] == 4
    assert len(pd.read_parquet(trial / "evals.parquet")) == 2
    assert FAKE_KEY not in res.stdout + res.stderr and not files_containing(results, FAKE_KEY)


@pytest.mark.parametrize("env,netrc_host,expected", [
    ({}, None, "offline"),
    ({"WANDB_API_KEY": FAKE_KEY}, None, "online"),
    ({"WANDB_API_KEY": FAKE_KEY, "WANDB_MODE": "offline"}, None, "offline"),
    ({}, "api.wandb.ai", "online"),
    ({"WANDB_BASE_URL": "https://wandb.example.com"}, "api.wandb.ai", "offline"),
    ({"WANDB_BASE_URL": "https://wandb.example.com"}, "wandb.example.com", "online"),
])
def test_mode_is_offline_without_a_key(tmp_path, monkeypatch, env, netrc_host, expected):
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    netrc = tmp_path / "netrc"
    if netrc_host:
        netrc.write_text(f"machine {netrc_host}\n  login user\n  password {FAKE_KEY}\n")
        netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert tracking.resolve_mode(tracking.WandbSettings()) == expected
