"""How long scoring takes on 100,000 eval rows (target: under 2 s).

Writes a fake results folder (5 submissions x 4 workloads x 5 studies x 4 trials = 400 trials of
250 evals each) to a temporary folder, then times loading it (summaries and eval histories)
and scoring it with 1000 bootstrap resamples.

    python benchmarks/bench_scoring.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_scoring_helpers import fake_evals, write_trial  # noqa: E402

from scoring.load import load_results  # noqa: E402
from scoring.pipeline import ScoreOptions, score_results  # noqa: E402

SUBMISSIONS, WORKLOADS, STUDIES, TRIALS, EVALS_PER_TRIAL = 5, 4, 5, 4, 250
BUDGET_S = 1000.0


def write_results(root: Path) -> int:
    """The fake results; returns the number of eval rows written."""
    rng = np.random.default_rng(0)
    rows = 0
    for s in range(SUBMISSIONS):
        for w in range(WORKLOADS):
            for study in range(STUDIES):
                for trial in range(TRIALS):
                    time_s = rng.uniform(100, 900) if rng.random() < 0.8 else np.inf
                    evals = fake_evals(time_s=time_s, budget_s=BUDGET_S, n=EVALS_PER_TRIAL)
                    write_trial(root, submission=f"sub{s}", workload=f"wl{w}", study=study,
                                trial=trial, time_s=time_s, budget_s=BUDGET_S, evals=evals)
                    rows += len(evals)
    return rows


def timed(label: str, fn):
    start = time.perf_counter()
    value = fn()
    print(f"  {label:<44} {time.perf_counter() - start:6.3f} s")
    return value


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "results"
        rows = write_results(root)
        print(f"{rows:,} eval rows in {SUBMISSIONS * WORKLOADS * STUDIES * TRIALS} trials")
        options = ScoreOptions(n_bootstrap=1000, seed=0, baseline="sub0")
        timed("load summaries + evals", lambda: load_results([root], with_evals=True))
        timed("load summaries + score + 1000 bootstrap", lambda: score_results(
            [root], options=options))
        start = time.perf_counter()
        scored = score_results([root], options=options, with_evals=True)
        total = time.perf_counter() - start
        assert len(scored.loaded.evals) == rows
        print(f"  {'total: load evals, score, bootstrap':<44} {total:6.3f} s "
              f"(target < 2 s: {'ok' if total < 2 else 'SLOW'})")


if __name__ == "__main__":
    main()
