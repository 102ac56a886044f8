"""What a SLURM job's tasks run: submitit's entry point, with SLURM's warning signal caught from
the first moment.

submitit installs its handlers (USR2: checkpoint and requeue; TERM: ignore, USR2 follows) only
after unpickling the job, which imports torch and the workloads: seconds in which a preemption or
time-limit signal would kill the task instead of having it checkpointed and requeued. This entry
point ignores TERM as submitit does and notes an early USR2 in the environment
(ALGOBENCH_EARLY_SIGNAL); `algobench.slurm.job.TrialJob` then suspends the trial as soon as it can.
Invoked as `python -m algobench.slurm.entry -u -m submitit.core._submit FOLDER`.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys

EARLY_SIGNAL = "ALGOBENCH_EARLY_SIGNAL"


def _remember(signum: int, frame: object) -> None:
    os.environ[EARLY_SIGNAL] = str(signum)


def main(argv: list[str]) -> None:
    signal.signal(getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")), _remember)
    signal.signal(signal.SIGTERM, lambda signum, frame: None)  # a preemption's TERM: USR2 follows
    args = [a for a in argv if a != "-u"]  # python's -u: unbuffered output, done here instead
    if len(args) != 3 or args[0] != "-m":
        raise SystemExit(f"usage: python -m algobench.slurm.entry -u -m MODULE FOLDER, got {argv}")
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
    sys.argv = [args[1], args[2]]
    runpy.run_module(args[1], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
