"""Where and with what a trial ran: hardware, package versions, git commit."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

import torch


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@cache
def hardware() -> dict:
    gpu_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    gpu = torch.cuda.get_device_name(0) if gpu_count else None
    driver = None
    if gpu_count:
        try:
            driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                    capture_output=True, text=True, timeout=10).stdout.split("\n")[0].strip() or None
        except (OSError, subprocess.SubprocessError):
            driver = None
    return {"cpu": _cpu_model(), "cpu_count": _cpu_count(), "gpu": gpu, "gpu_count": gpu_count,
            "gpu_driver": driver, "torch": torch.__version__}


def hardware_key(hw: dict) -> str:
    """Equal for trials on the same kind of machine: `2x AMD EPYC 7B13` or `8x NVIDIA H100 80GB HBM3`."""
    if hw.get("gpu_count"):
        return f"{hw['gpu_count']}x {hw['gpu']}"
    return f"{hw['cpu_count']}x {hw['cpu']}"


def versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for package in ("algobench", "torch", "numpy", "pandas"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def git_commit(path: Path) -> str | None:
    try:
        res = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=10).stdout.strip()
    return res.stdout.strip() + ("-dirty" if dirty else "")

