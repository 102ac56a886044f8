"""Whether anything else competed with a trial for its cores or its GPU.

A 2-thread torch trial on a busy 2-core machine runs 5-7x slower, and its time-to-target says
nothing about the submission. `Monitor` samples, once a second in a background thread, how many
threads the machine wants to run (the kernel's run queue, the 4th field of /proc/loadavg, minus
the sampler itself) and reads the 1-minute load average and, on a GPU, the other processes using
it, at the start, at every eval and at the end. The trial was *contended* when the mean run
queue exceeded the cores available to it (its CPU affinity), or another process used its GPU.
The readings cost microseconds and happen off the clock or in the background.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from typing import Any

SAMPLE_EVERY_S = 1.0


def cpu_count() -> int:
    """The cores this process may run on (a SLURM job's cpuset, taskset), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def runnable_threads() -> int | None:
    """Threads the machine wants to run right now, the calling one excluded (None: not Linux)."""
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            running = int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0, running - 1)


def other_gpu_processes(device_index: int | None) -> int | None:
    """Processes other than this one using GPU `device_index` (None: not measurable here)."""
    if device_index is None or shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--id={device_index}", "--query-compute-apps=pid", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    pids = {int(line) for line in out.split() if line.strip().isdigit()}
    return len(pids - {os.getpid()})


@dataclass
class Readings:
    """What a monitor has seen so far (kept in a checkpoint as a dict: `asdict`)."""

    queue_sum: float = 0.0
    queue_samples: int = 0
    queue_max: int = 0
    load_avg_max: float | None = None
    other_gpu_processes: int | None = None


class Monitor:
    def __init__(self, *, gpu_index: int | None = None, readings: dict | None = None,
                 sample_every_s: float = SAMPLE_EVERY_S) -> None:
        self.cores = cpu_count()
        self.gpu_index = gpu_index
        self.readings = Readings(**(readings or {}))
        self._every = sample_every_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Monitor:
        self.read()
        self._thread = threading.Thread(target=self._sample_loop, name="algobench-contention", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._stop.is_set():  # stopped already (the trial's end, then run_trial's finally)
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.read()

    def sample(self, queue: int | None) -> None:
        if queue is None:
            return
        with self._lock:
            r = self.readings
            r.queue_sum += queue
            r.queue_samples += 1
            r.queue_max = max(r.queue_max, queue)

    def read(self) -> None:
        """The load average and the GPU's other processes (at start, evals and end)."""
        self.sample(runnable_threads())
        try:
            load = os.getloadavg()[0]
        except OSError:
            load = None
        others = other_gpu_processes(self.gpu_index)
        with self._lock:
            r = self.readings
            if load is not None:
                r.load_avg_max = load if r.load_avg_max is None else max(r.load_avg_max, load)
            if others is not None:
                r.other_gpu_processes = max(others, r.other_gpu_processes or 0)

    def _sample_loop(self) -> None:
        while not self._stop.wait(self._every):
            self.sample(runnable_threads())

    def state(self) -> dict[str, Any]:
        with self._lock:
            r = self.readings
            return {"queue_sum": r.queue_sum, "queue_samples": r.queue_samples, "queue_max": r.queue_max,
                    "load_avg_max": r.load_avg_max, "other_gpu_processes": r.other_gpu_processes}

    def result(self) -> dict[str, Any]:
        """The summary's `contention` object."""
        return verdict(self.state(), cores=self.cores)


def verdict(state: dict[str, Any], *, cores: int) -> dict[str, Any]:
    """`contended`: the mean run queue exceeded `cores`, or another process used the GPU."""
    samples = state["queue_samples"]
    mean = state["queue_sum"] / samples if samples else None
    others = state["other_gpu_processes"]
    contended = (mean is not None and mean > cores) or bool(others)
    return {"load_avg_max": state["load_avg_max"], "cpu_count": cores,
            "run_queue_mean": None if mean is None else round(mean, 3), "run_queue_max": state["queue_max"],
            "other_gpu_processes": others, "contended": contended}
