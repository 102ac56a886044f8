"""The share of wall time each smoke workload spends evaluating, at its default settings.

    python benchmarks/eval_share.py [--workloads gpt2 vit ...] [--submission adamw] [--max-steps N]

Runs one default trial per workload (smoke size, CPU, the given submission, to its target or
budget) and prints eval_time_s / wall_time_s, and the refinement's share (snapshots and their
evaluations, off the clock). Goal: eval share <= 10% on every workload. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from algobench.specs import RunOptions, TrialConfig
from algobench.trial import execute

WORKLOADS = ("gpt2", "vit", "bert", "detr", "gnn", "tts")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS))
    ap.add_argument("--submission", default="adamw")
    ap.add_argument("--max-steps", type=int, default=None, help="stop earlier (the share is then not the default's)")
    ap.add_argument("--data-dir", type=Path, default=Path("data"))
    args = ap.parse_args()
    results = Path(tempfile.mkdtemp(prefix="eval-share-"))
    print(f"{'workload':10} {'status':12} {'steps':>6} {'wall s':>8} {'eval s':>8} {'eval %':>7} {'refine %':>8}  contended")
    for name in args.workloads:
        config = TrialConfig(workload=name, size="smoke", submission=args.submission, data_dir=args.data_dir,
                             results_dir=results, options=RunOptions(device="cpu", max_steps=args.max_steps))
        s, _ = execute(config)
        wall = s["wall_time_s"]
        refine = s.get("refine_time_s") or 0.0
        print(f"{name:10} {s['status']:12} {s['steps']:>6} {wall:>8.1f} {s['eval_time_s']:>8.2f} "
              f"{100 * s['eval_time_s'] / wall:>6.1f}% {100 * refine / wall:>7.1f}%  {s['contention']['contended']}",
              flush=True)


if __name__ == "__main__":
    main()
