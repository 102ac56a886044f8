"""How much the same trial's time-to-target varies from run to run.

    python benchmarks/timing_noise.py [--runs 5] [--workload gpt2] [--submission adan]

Runs the same smoke trial (same seed) N times in this process and prints the coefficient of
variation (std / mean) of the eval-based and the refined time-to-target and of the time per
step. Goal on an idle machine: CV <= 3%. The runs' contention verdicts are printed too: a
contended run's times are not comparable.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from algobench.specs import RunOptions, TrialConfig
from algobench.trial import execute


def cv(values: list[float]) -> float:
    return statistics.stdev(values) / statistics.mean(values) if len(values) > 1 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workload", default="gpt2")
    ap.add_argument("--submission", default="adan")
    ap.add_argument("--data-dir", type=Path, default=Path("data"))
    args = ap.parse_args()
    results = Path(tempfile.mkdtemp(prefix="timing-noise-"))
    ttt, refined, per_step = [], [], []
    for i in range(args.runs):
        config = TrialConfig(workload=args.workload, size="smoke", submission=args.submission, data_dir=args.data_dir,
                             results_dir=results, options=RunOptions(device="cpu"))
        s, _ = execute(config)
        per_step.append(s["submission_time_s"] / max(1, s["steps"]))
        if s["status"] == "reached":
            ttt.append(s["time_to_target_s"])
            refined.append(s["refined_time_to_target_s"])
        print(f"run {i + 1}: {s['status']}, time-to-target {s['time_to_target_s']} s, refined "
              f"{s['refined_time_to_target_s']} s ({s['refined_steps_to_target']} steps), "
              f"{1000 * per_step[-1]:.1f} ms/step, contended {s['contention']['contended']}", flush=True)
    print(f"CV over {args.runs} runs: time-to-target {100 * cv(ttt):.2f}%, refined {100 * cv(refined):.2f}%, "
          f"time per step {100 * cv(per_step):.2f}% (goal <= 3% on an idle machine)")


if __name__ == "__main__":
    main()
