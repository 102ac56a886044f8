"""The GPU check: the real tier's speed on one device, in one run of under 8 minutes.

    python benchmarks/gpu_check.py [--device auto] [--steps 30] [--warmup 3] [--out gpu_check.json]
                                   [--workloads gpt2 vit bert gnn tts detr] [--budget-s 450]

1. Per workload at small size, `--steps` steps at the preset's batch in bf16 (on a GPU), with
   torch.compile and without: step time, examples/s, achieved FLOP/s and MFU (analytic FLOPs,
   algobench/flops.py), peak memory, and the eval's cost per example with its estimated share of
   a run (the preset's eval set every eval_period_s).
2. GPT-2 124M (full) at the largest micro-batch that fits: step time and MFU (goal: >= 50% in
   bf16 on an H100-class GPU; nanoGPT-class code reaches ~40%).
3. JAX vs torch step time for gpt2 and vit (small), when JAX is installed.

Data are generated in their real formats (tests/realdata.py) and prepared by `data prepare`'s
code, so the check needs no data set and no network. Steps run through the submission's full
AlgoPerf form, as benchmarks/jax_vs_torch.py does; the first `--warmup` steps (compilation,
allocator) are not timed. Prints one table and writes it as JSON. On a CPU, `--device cpu
--steps 1 --warmup 0` is a dry run (batch 1, no torch.compile, GPT-2 at micro-batch 1) that the
tests run.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import torch  # noqa: E402

from algobench import flops  # noqa: E402
from algobench.specs import RunOptions, TrialConfig  # noqa: E402
from jax_vs_torch import Stepper  # noqa: E402
from tests import realdata  # noqa: E402
from workloads import WORKLOADS  # noqa: E402

GPT2_MICRO_BATCHES = (64, 48, 32, 24, 16, 12, 8, 4, 2, 1)
# The preset's eval set, in examples, for the eval share (None: not known here)
EVAL_EXAMPLES = {"vit": 50_000, "gnn": 43_793, "detr": 5_000, "tts": None}  # ImageNet val, molpcba val, COCO val


def preset_eval_examples(name: str, size: str) -> int | None:
    cfg = WORKLOADS.get(name).presets[size].config
    if name == "gpt2":
        return cfg.eval_tokens // cfg.model.block_size
    if name == "bert":
        return cfg.eval_rows
    return EVAL_EXAMPLES.get(name)


def device_info(device: str) -> tuple[str, str | None]:
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    return dev.type, (torch.cuda.get_device_name(dev.index or 0) if dev.type == "cuda" else None)


_PREPARED: dict[tuple[str, str, int], Path] = {}


def prepared(name: str, size: str, root: Path, *, examples: int) -> Path:
    """Generated real-format data for `examples` per batch, prepared once per run."""
    key = (name, size, examples)
    if key not in _PREPARED:
        _PREPARED[key] = realdata.prepare(name, size, root / f"{name}-{size}-{examples}", examples=examples)
    return _PREPARED[key]


def measure(name: str, size: str, *, device: str, framework: str = "torch", compile: bool, steps: int,
            warmup: int, batch_size: int | None, root: Path, precision: str) -> dict:
    """One row: `steps` timed steps after the warm-up, and one eval of the tiny eval set."""
    preset = WORKLOADS.get(name).presets[size]
    batch = batch_size or preset.batch_size
    data_dir = prepared(name, size, root, examples=batch)
    dev_type, dev_name = device_info(device)
    row = {"workload": name, "size": size, "framework": framework, "compile": compile, "batch": batch}
    with realdata.tiny_eval(name, size):
        cfg = TrialConfig(workload=name, size=size, submission="adamw", framework=framework, data_dir=data_dir,
                          options=RunOptions(device=device, precision=precision, compile="on" if compile else "off"))
        if dev_type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        stepper = Stepper(cfg)
        stepper.batches = stepper.workload.train_batches(seed=0, batch_size=batch)  # Stepper takes the preset's
        start = time.perf_counter()
        if warmup:
            stepper.run(warmup)
        row["warmup_s"] = time.perf_counter() - start
        step_s = stepper.run(steps)
        precision_used = flops.matmul_precision(stepper.framework.describe()["precision"], dev_type)
        start = time.perf_counter()
        metrics = stepper.workload.evaluate(stepper.model, "val") if framework == "torch" else {}
        eval_s = time.perf_counter() - start
        n_eval = _eval_count(stepper.workload) if framework == "torch" else None
    per_example = WORKLOADS.get(name).cost(preset).train_flops_per_example
    achieved = per_example * batch / step_s
    peak = flops.peak_flops(dev_name, precision_used)
    row.update(step_ms=step_s * 1e3, examples_per_s=batch / step_s, achieved_tflops=achieved / 1e12,
               mfu=achieved / peak if peak else None, precision=precision_used,
               peak_mem_gib=torch.cuda.max_memory_allocated() / 2**30 if dev_type == "cuda" else None,
               eval_metrics=metrics)
    if n_eval:
        eval_per_example = eval_s / n_eval
        full_eval = preset_eval_examples(name, size)
        row["eval_ms_per_example"] = eval_per_example * 1e3
        if full_eval:
            one_eval = full_eval * eval_per_example
            row["eval_share_est"] = one_eval / (preset.eval_period_s + one_eval)
    del stepper
    return row


def _eval_count(workload) -> int:
    return sum(int(next(v for k, v in b.items() if torch.is_tensor(v)).shape[0]) for b in workload.eval_batches("val"))


def gpt2_largest_micro_batch(*, device: str, steps: int, warmup: int, root: Path, precision: str, candidates) -> dict:
    """GPT-2 124M at the largest micro-batch (sequences of 1,024) that fits: probed eagerly (2
    steps each, largest first), then measured with torch.compile on a GPU."""
    on_gpu = device_info(device)[0] == "cuda"
    for batch in candidates:
        try:
            if on_gpu and batch != candidates[-1]:
                measure("gpt2", "full", device=device, compile=False, steps=2, warmup=1, batch_size=batch,
                        root=root, precision=precision)
            row = measure("gpt2", "full", device=device, compile=on_gpu, steps=steps, warmup=warmup, batch_size=batch,
                          root=root, precision=precision)
            row["note"] = "largest micro-batch that fits"
            return row
        except torch.OutOfMemoryError:
            gc.collect()
            torch.cuda.empty_cache()
    return {"workload": "gpt2", "size": "full", "note": "no micro-batch fits"}


def jax_matches(on_gpu: bool) -> str | None:
    """Why JAX rows are skipped, or None: not installed, or not on the device torch uses."""
    try:
        import jax
    except ImportError:
        return "jax vs torch: jax is not installed"
    backend = jax.default_backend()
    if on_gpu and backend != "gpu":
        return f"jax vs torch: jax runs on {backend}, not the GPU (install jax[cuda12])"
    return None


def table(rows: list[dict]) -> str:
    cols = [("workload", "{}"), ("size", "{}"), ("framework", "{}"), ("compile", "{}"), ("batch", "{}"),
            ("step_ms", "{:.1f}"), ("examples_per_s", "{:.1f}"), ("achieved_tflops", "{:.2f}"), ("mfu", "{:.1%}"),
            ("peak_mem_gib", "{:.1f}"), ("eval_ms_per_example", "{:.2f}"), ("eval_share_est", "{:.1%}")]
    lines = [" | ".join(c for c, _ in cols)]
    for r in rows:
        lines.append(" | ".join(fmt.format(r[c]) if r.get(c) is not None else "-" for c, fmt in cols)
                     + (f"  ({r['note']})" if r.get("note") else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation, allocator)")
    ap.add_argument("--workloads", nargs="+", default=["gpt2", "vit", "bert", "gnn", "tts", "detr"])
    ap.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    ap.add_argument("--budget-s", type=float, default=450.0, help="parts not started by then are skipped")
    args = ap.parse_args(argv)

    on_gpu = device_info(args.device)[0] == "cuda"
    precision = "bf16" if on_gpu else "fp32"
    batch = None if on_gpu else 1  # the preset's batch on a GPU
    start, rows, skipped = time.perf_counter(), [], []
    no_jax = jax_matches(on_gpu)
    # the most wanted figures first: the 8-minute budget may skip the last parts
    jobs = [("gpt2_max", "gpt2", "torch", on_gpu)]
    jobs += [("small", name, "torch", False) for name in args.workloads]
    jobs += [("small", name, "torch", True) for name in args.workloads if on_gpu]
    jobs += [("small", name, "jax", False) for name in ("gpt2", "vit") if name in args.workloads and not no_jax]
    with tempfile.TemporaryDirectory() as tmp:
        for kind, name, framework, compile in jobs:
            if time.perf_counter() - start > args.budget_s:
                skipped.append(f"{kind} {name} {framework} compile={compile}")
                continue
            root = Path(tmp)
            try:
                if kind == "gpt2_max":
                    row = gpt2_largest_micro_batch(device=args.device, steps=args.steps, warmup=args.warmup, root=root,
                                                   precision=precision, candidates=GPT2_MICRO_BATCHES if on_gpu else (1,))
                else:
                    row = measure(name, "small", device=args.device, framework=framework, compile=compile,
                                  steps=args.steps, warmup=args.warmup, batch_size=batch, root=root,
                                  precision=precision)
            except Exception as err:  # one failing part must not cost the others their device time
                row = {"workload": name, "size": "full" if kind == "gpt2_max" else "small", "framework": framework,
                       "compile": compile, "error": f"{type(err).__name__}: {err}"[:500],
                       "note": f"failed: {type(err).__name__}"}
            gc.collect()
            if on_gpu:
                torch.cuda.empty_cache()
            rows.append(row)
            print(table([row]).splitlines()[1], flush=True)
    if no_jax:
        skipped.append(no_jax)
    _, name = device_info(args.device)
    result = {"device": name or "cpu", "torch": torch.__version__, "steps": args.steps, "rows": rows,
              "skipped": skipped, "total_s": time.perf_counter() - start}
    print(f"\n{result['device']}, torch {torch.__version__}, {args.steps} timed steps per row\n{table(rows)}")
    if skipped:
        print("skipped: " + "; ".join(skipped))
    args.out.write_text(json.dumps(result, indent=1, default=str))
    return rows


if __name__ == "__main__":
    main()
