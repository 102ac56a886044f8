"""The stopwatch that keeps evaluation and logging off the submission clock."""

from __future__ import annotations

import time
from collections.abc import Callable


class Stopwatch:
    """Accumulates submission time over running segments.

    Reading `elapsed_s` while running uses the host clock only (no device sync), which is what
    the per-step "is an eval due?" check needs. `pause()` syncs the device first, so the time
    of queued GPU work lands in the segment that launched it.
    """

    def __init__(self, sync: Callable[[], None] = lambda: None) -> None:
        self._sync = sync
        self._accumulated_s = 0.0
        self._started_at: float | None = None

    @property
    def running(self) -> bool:
        return self._started_at is not None

    @property
    def elapsed_s(self) -> float:
        if self._started_at is None:
            return self._accumulated_s
        return self._accumulated_s + (time.perf_counter() - self._started_at)

    def resume(self) -> None:
        if self._started_at is None:
            self._started_at = time.perf_counter()

    def pause(self) -> float:
        if self._started_at is not None:
            self._sync()
            self._accumulated_s += time.perf_counter() - self._started_at
            self._started_at = None
        return self._accumulated_s

    def restore(self, accumulated_s: float) -> None:
        """Continue from a saved total (resuming a checkpointed trial)."""
        self._accumulated_s = accumulated_s
