"""Time the runner's training step against a bare PyTorch loop: same model, batches, optimizer.

    python benchmarks/step_overhead.py [--size smoke] [--steps 100] [--repeats 5] [--device cpu]

Blocks of `steps` steps alternate between the runner (its submission time per step) and a bare
loop (perf_counter around the same steps), in one process; the medians and their ratio are
printed. Goal: ratio <= 1.02.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from algobench import submission as submission_lib
from algobench.events import Ended
from algobench.frameworks.torch import TorchBackend, TorchFramework
from algobench.runner import run_trial
from algobench.specs import RunOptions, TrialConfig
from workloads import WORKLOADS


def runner_block(cfg: TrialConfig, sub) -> float:
    end = [e for e in run_trial(cfg, sub) if isinstance(e, Ended)][-1]
    assert end.reason == "max steps", end.reason
    return end.submission_time_s / end.steps


def bare_block(cfg: TrialConfig, sub, steps: int) -> float:
    """What a researcher would write by hand: the same model, batches and optimizer, no harness."""
    backend = TorchBackend.choose(cfg.options.device, cfg.options.precision, cfg.options.compile)
    spec = WORKLOADS.get(cfg.workload)
    wl = TorchFramework(backend).prepare(cfg, spec, spec.preset(cfg.size))
    torch.manual_seed(cfg.seed)
    model = wl.init_model(cfg.seed)
    if backend.compile:
        model = torch.compile(model)
    hp = submission_lib.make_hparams(sub.hparams())
    opt = sub.module.make_optimizer(model=model, hparams=hp, workload=wl)
    batches = wl.train_batches(seed=cfg.seed, batch_size=wl.preset.batch_size)
    backend.sync()
    start = time.perf_counter()
    for step in range(steps):
        batch = next(batches)
        lr = sub.module.lr_schedule(step=step, step_hint=wl.step_hint, hparams=hp)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss = wl.loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), hp.grad_clip)
        opt.step()
    backend.sync()
    return (time.perf_counter() - start) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", default="gpt2")
    ap.add_argument("--size", default="smoke")
    ap.add_argument("--submission", default="adamw")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data-dir", type=Path, default=Path("data"))
    args = ap.parse_args()

    spec = WORKLOADS.get(args.workload)
    if not spec.data.is_ready(args.size, args.data_dir):
        spec.data.prepare(args.size, args.data_dir)
    sub = submission_lib.load(args.submission)
    cfg = TrialConfig(workload=args.workload, size=args.size, submission=args.submission, data_dir=args.data_dir,
                      results_dir=Path(tempfile.mkdtemp()),
                      options=RunOptions(device=args.device, max_steps=args.steps, eval_period_steps=10**9,
                                         budget_s=10**9))
    runner_block(cfg, sub), bare_block(cfg, sub, min(args.steps, 20))  # warm-up (allocator, caches)
    runner, bare = [], []
    for r in range(args.repeats):
        runner.append(runner_block(cfg, sub))
        bare.append(bare_block(cfg, sub, args.steps))
        print(f"repeat {r}: runner {runner[-1] * 1e3:.2f} ms/step, bare {bare[-1] * 1e3:.2f} ms/step")
    ratio = statistics.median(runner) / statistics.median(bare)
    print(f"{args.workload}/{args.size} {args.submission} on {cfg.options.device}: runner "
          f"{statistics.median(runner) * 1e3:.2f} ms/step, bare loop {statistics.median(bare) * 1e3:.2f} ms/step, "
          f"ratio {ratio:.3f} (goal <= 1.02)")


if __name__ == "__main__":
    main()
