"""Step time of the same submission in JAX and in PyTorch, per workload, as the runner runs them.

    python benchmarks/jax_vs_torch.py [--workloads gpt2 vit] [--size smoke] [--steps 50] [--repeats 5]
                                      [--device auto] [--submission adamw]

For each workload both frameworks are set up as `algobench run` sets them up (the framework's
defaults for the device: on a GPU, bf16 and torch.compile / jit), warmed up (JAX compiles its
step ahead of time: that time is printed apart), then blocks of `steps` steps alternate between
the two in one process, so that a loaded machine slows both alike. Prints the median ms/step of
each and the ratio JAX / torch.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from algobench import submission as submission_lib
from algobench.frameworks import framework_for
from algobench.runner import ensure_data
from algobench.specs import RunOptions, TrialConfig, apply_overrides


class Stepper:
    """One framework's model, optimizer and batches, stepped through the submission's full form."""

    def __init__(self, cfg: TrialConfig) -> None:
        spec = ensure_data(cfg)
        self.framework = framework_for(cfg, spec, _single())
        self.sub = submission_lib.load(cfg.submission, framework=cfg.framework)
        self.hparams = submission_lib.make_hparams(self.sub.hparams())
        self.workload = self.framework.prepare(cfg, spec, apply_overrides(spec.preset(cfg.size), cfg.options))
        torch.manual_seed(cfg.seed)
        self.model = self.framework.init_model(self.workload, cfg.seed, _single())
        self.state = self.sub.init_optimizer_state(workload=self.workload, model_params=self.model, model_state=None,
                                                   hyperparameters=self.hparams, rng=np.zeros(2, np.int32))
        self.batches = self.workload.train_batches(seed=cfg.seed, batch_size=self.workload.preset.batch_size)
        self.step_count = 0

    def run(self, steps: int) -> float:
        """Seconds per step over `steps` steps, device work included."""
        self.framework.sync(self.model)
        start = time.perf_counter()
        for _ in range(steps):
            out = self.sub.update_params(
                workload=self.workload, current_param_container=self.model,
                current_params_types=self.workload.param_types, model_state=None, hyperparameters=self.hparams,
                batch=next(self.batches), loss_type="cross_entropy", optimizer_state=self.state, eval_results=[],
                global_step=self.step_count, rng=np.zeros(2, np.int32))
            self.state, self.model = out[0], out[1]
            self.step_count += 1
        self.framework.sync(self.model)
        return (time.perf_counter() - start) / steps


def _single():
    from algobench.distributed import SINGLE

    return SINGLE


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", nargs="+", default=["gpt2", "vit"])
    ap.add_argument("--size", default="smoke")
    ap.add_argument("--submission", default="adamw")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data-dir", type=Path, default=Path("data"))
    args = ap.parse_args()

    lines = []
    for name in args.workloads:
        steppers = {}
        for framework in ("torch", "jax"):
            cfg = TrialConfig(workload=name, size=args.size, submission=args.submission, framework=framework,
                              data_dir=args.data_dir, options=RunOptions(device=args.device))
            steppers[framework] = Stepper(cfg)
        start = time.perf_counter()
        steppers["jax"].run(1)  # compiles
        compile_s = time.perf_counter() - start
        steppers["torch"].run(3)  # warm-up (allocator, caches, torch.compile on GPU)
        steppers["jax"].run(3)
        times: dict[str, list[float]] = {"torch": [], "jax": []}
        for r in range(args.repeats):
            for framework, stepper in steppers.items():
                times[framework].append(stepper.run(args.steps))
            print(f"{name} repeat {r}: torch {times['torch'][-1] * 1e3:.1f} ms/step, "
                  f"jax {times['jax'][-1] * 1e3:.1f} ms/step", flush=True)
        torch_ms, jax_ms = (statistics.median(times[f]) * 1e3 for f in ("torch", "jax"))
        torch_desc = steppers["torch"].framework.describe()
        jax_desc = steppers["jax"].framework.describe()
        lines.append(f"{name}/{args.size} {args.submission}: torch {torch_ms:.1f} ms/step ({torch_desc['device']}, "
                     f"{torch_desc['precision']}), jax {jax_ms:.1f} ms/step ({jax_desc['device']}, "
                     f"{jax_desc['precision']}), ratio jax/torch {jax_ms / torch_ms:.2f}; "
                     f"jax compile {compile_s:.1f} s")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
