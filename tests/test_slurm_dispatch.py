"""Dispatch without a cluster: executors, cluster profiles as sbatch scripts, job records, errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from submitit.slurm.slurm import _make_sbatch_string

from algobench.slurm import jobs
from algobench.slurm import profile as slurm_profile
from algobench.slurm import submit as dispatch
from tests.helpers import cli
from tests.test_cli import assert_user_error

RUN = ("run", "--workload", "gpt2", "--submission", "adan", "--max-steps", "4", "--eval-every-steps", "2",
       "--batch-size", "4", "--device", "cpu", "--seed", "3")


def test_local_and_debug_executors_land_the_same_trial_where_a_local_run_does(data_dir, tmp_path):
    """The executors that need no cluster (slurm: tests/test_slurm.py). `debug` runs the SLURM job's
    code path (TrialJob through submitit) in this process: same folder layout, same numbers."""
    histories = []
    for executor in ("local", "debug"):
        results = tmp_path / executor
        res = cli(*RUN, "--executor", executor, "--data-dir", str(data_dir), "--results-dir", str(results))
        assert res.returncode == 0, res.stdout + res.stderr
        [folder] = (results / "gpt2" / "smoke" / "adan").glob("run-*-seed3")
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["status"] == "not_reached" and summary["steps"] == 4 and summary["requeues"] == 0
        assert "time-to-target" in res.stdout
        histories.append(pd.read_parquet(folder / "evals.parquet")[["step", "val_loss"]].values.tolist())
    assert histories[0] == histories[1] and [row[0] for row in histories[0]] == [2, 4]


def test_profile_becomes_the_sbatch_script(tmp_path):
    profile = slurm_profile.load_profile("example-gpu", ["time_limit_min=240", "qos=high"])
    script = _make_sbatch_string(command="python -m x", folder=tmp_path, **profile.submitit_parameters())
    for line in ("--partition=gpu", "--account=my-project", "--qos=high", "--gpus-per-node=8",
                 "--ntasks-per-node=8", "--cpus-per-task=10", "--mem=480GB", "--time=240",
                 "--constraint=a100", "--signal=USR2@120", "--exclude=gpu-node-17"):
        assert f"#SBATCH {line}" in script, line
    assert "module load cuda/12.4" in script
    assert slurm_profile.load_profile("dev").partition == "debug"


@pytest.mark.parametrize("args,fragments", [
    (("--executor", "sluurm"), ["unknown executor 'sluurm'", "slurm"]),
    (("--executor", "slurm", "--cluster", "exmple-gpu"), ["unknown cluster profile 'exmple-gpu'", "example-gpu"]),
    (("--executor", "slurm", "--slurm", "partiton=gpu"), ["--slurm: 'partiton' is not a cluster option", "partition"]),
    (("--executor", "slurm", "--slurm", "gpus_per_node"), ["write KEY=VALUE"]),
    (("--executor", "slurm", "--slurm", "time_limit_min=soon"), ["time_limit_min", "integer"]),
])
def test_bad_dispatch_options_are_one_line_errors(args, fragments, tmp_path):
    res = cli(*RUN, *args, "--results-dir", str(tmp_path / "results"), cwd=tmp_path)
    assert_user_error(res, *fragments)


def test_profile_file_with_an_unknown_option(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("partition: gpu\ngpu_per_node: 4\n")
    with pytest.raises(Exception, match="'gpu_per_node' is not a cluster option; did you mean: gpus_per_node"):
        slurm_profile.load_profile(str(path))


def test_jobs_and_cancel_without_jobs(tmp_path):
    res = cli("jobs", "--results-dir", str(tmp_path))
    assert res.returncode == 0 and "no jobs submitted" in res.stdout
    assert json.loads(cli("jobs", "--results-dir", str(tmp_path), "--format", "json").stdout) == []
    jobs.record(tmp_path, kind="run", cluster="dev", tasks=[("41", tmp_path / "t", tmp_path / "o", tmp_path / "e")])
    assert_user_error(cli("cancel", "14", "--results-dir", str(tmp_path)), "unknown job '14'", "did you mean: 41")


def test_sacct_rows_give_states_and_requeues():
    text = "\n".join(["7|REQUEUED", "7|REQUEUED", "7|RUNNING", "8_[2-3%2]|PENDING", "8_0|COMPLETED",
                      "8_1|CANCELLED by 0", "9_[0,4]|PENDING"])
    assert jobs.parse_sacct(text) == {
        "7": ("RUNNING", 2), "8_2": ("PENDING", 0), "8_3": ("PENDING", 0), "8_0": ("COMPLETED", 0),
        "8_1": ("CANCELLED", 0), "9_0": ("PENDING", 0), "9_4": ("PENDING", 0)}


def test_submitting_checks_the_data_before_queueing(tmp_path):
    from algobench.specs import TrialConfig

    config = TrialConfig(workload="gpt2", size="small", submission="adan", data_dir=tmp_path / "none",
                         results_dir=tmp_path / "results")
    with pytest.raises(Exception, match="algobench data prepare gpt2 --size small"):
        dispatch.submit_trials([config], executor="debug")
    assert not (tmp_path / "results").exists()  # nothing reserved, nothing queued
