"""How precise each smoke workload's target metric is: its eval set's size and bootstrap standard error.

    python benchmarks/eval_precision.py [--workloads gpt2 vit ...] [--steps gpt2=400 ...] [--cluster tts=1 ...]
                                        [--seed 1] [--bootstrap 200] [--threads 1] [--data-dir data]

Per workload (smoke size, CPU, AdamW's defaults, trial seed `--seed`): trains the default trial's
model through the submission's AlgoPerf form (benchmarks/jax_vs_torch.py's `Stepper`) for about the
steps AdamW needs to reach the target (README's eval-share table), then evaluates the target metric
on the val set and estimates its standard error by a cluster bootstrap: the eval set is cut into batches of
a few consecutive examples (`CLUSTER`: at least ~48 batches per set) and the metric recomputed,
through the workload's own `evaluate`, on `--bootstrap` resamples of those batches with
replacement; the SE is the std of those values. The metric on the identity resample is checked
against the preset's own eval batching. DETR's COCOeval keys images by id, so each drawn copy of a
batch gets fresh image ids with a ground truth to match. Also prints the untrained model's value
and the metric one eval period earlier (how far the curve moves between two evals, against the SE).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from algobench.specs import RunOptions, TrialConfig  # noqa: E402
from jax_vs_torch import Stepper  # noqa: E402

STEPS = {"gpt2": 400, "vit": 1250, "bert": 700, "detr": 900, "gnn": 300, "tts": 550}  # README's eval-share table
CLUSTER = {"gpt2": 2, "vit": 8, "bert": 8, "detr": 4, "gnn": 8, "tts": 1}  # examples per bootstrap unit
SPLIT = "val"


def eval_set_size(name: str, batches: list[dict]) -> str:
    """Examples, and the tokens or positions a per-token or per-position metric averages over."""
    if name == "detr":
        return f"{sum(len(b['image_ids']) for b in batches):,} images"
    if name == "tts":
        frames = sum(int(b["targets"]["frame_mask"].sum()) for b in batches)
        return f"{sum(len(b['phones']) for b in batches):,} clips; {frames:,} frames"
    examples = sum(len(b["targets"]) for b in batches)
    unit = {"gpt2": "sequences", "vit": "images", "bert": "rows", "gnn": "graphs"}[name]
    if name == "gpt2":
        return f"{examples:,} {unit}; {sum(b['targets'].numel() for b in batches):,} tokens"
    if name == "bert":
        return f"{examples:,} {unit}; {sum(int(b['mask'].sum()) for b in batches):,} masked positions"
    return f"{examples:,} {unit}"


def with_eval_batch_size(cfg, n: int):
    if hasattr(cfg, "eval_batch_size"):
        return cfg.model_copy(update={"eval_batch_size": n})
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"eval_batch_size": n})})  # detr


def resampled(workload, batches: list[dict], picks: np.ndarray) -> list[dict]:
    """The batches `picks`; for DETR with fresh image ids, and the workload's ground truth and
    image list swapped for the resample's (COCOeval would merge copies of one image)."""
    if workload.name != "detr":
        return [batches[k] for k in picks]
    from pycocotools.coco import COCO

    from workloads.detr.coco_eval import load_ground_truth

    index = workload.index(SPLIT)
    truth = load_ground_truth(index.ann_file)
    images, annotations, out = [], [], []
    for k in picks:
        ids = torch.arange(len(images) + 1, len(images) + 1 + len(batches[k]["image_ids"]))
        for old, new in zip(batches[k]["image_ids"].tolist(), ids.tolist(), strict=True):
            images.append({**truth.imgs[old], "id": new})
            for ann in truth.imgToAnns[old]:
                annotations.append({**ann, "image_id": new, "id": len(annotations) + 1})
        out.append({**batches[k], "image_ids": ids})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations, "categories": truth.dataset["categories"]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    workload._ground_truth[SPLIT] = gt
    workload._index[SPLIT] = dataclasses.replace(index, image_ids=np.array([im["id"] for im in images]))
    return out


def measure(name: str, steps: int, cluster: int, args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    stepper = Stepper(TrialConfig(workload=name, size="smoke", submission="adamw", seed=args.seed,
                                  data_dir=args.data_dir, options=RunOptions(device="cpu")))
    workload, target = stepper.workload, stepper.workload.preset.target
    key = target.metric.removeprefix(f"{SPLIT}_")

    def metric() -> float:
        return workload.evaluate(stepper.model, SPLIT)[key]

    untrained = metric()
    period = min(workload.preset.eval_period_steps, steps // 2)
    stepper.run(steps - period)
    before = metric()
    stepper.run(period)
    at_steps = metric()  # at the preset's eval batch size

    workload.preset = workload.preset.model_copy(update={"config": with_eval_batch_size(workload.cfg, cluster)})
    getattr(workload, "_eval_cache", {}).clear()
    batches = list(workload.eval_batches(SPLIT))

    def metric_on(picks: np.ndarray) -> float:
        resample = resampled(workload, batches, picks)
        workload.eval_batches = lambda split: iter(resample)
        return metric()

    identity = metric_on(np.arange(len(batches)))
    rng = np.random.default_rng(args.bootstrap_seed)
    values = [metric_on(rng.integers(0, len(batches), len(batches))) for _ in range(args.bootstrap)]
    se = float(np.std(values, ddof=1))
    row = {"name": name, "metric": target.metric, "target": target.value, "size": eval_set_size(name, batches),
           "steps": steps, "value": at_steps, "se": se, "se_gap": se / abs(target.value - untrained),
           "seconds": time.perf_counter() - start}
    print(f"{name}: {target.metric} untrained {untrained:.4f}, step {steps - period} {before:.4f}, step {steps} "
          f"{at_steps:.4f} (change over the last eval period {at_steps - before:+.4f}, SE / change "
          f"{se / abs(at_steps - before):.2f}); {len(batches)} batches of {cluster}, identity resample minus "
          f"preset batching {identity - at_steps:.2e}; bootstrap mean {np.mean(values):.4f}; "
          f"{row['seconds']:.0f} s", flush=True)
    return row


def with_overrides(defaults: dict[str, int], pairs: list[str]) -> dict[str, int]:
    return defaults | {k: int(v) for k, v in (pair.split("=") for pair in pairs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", nargs="+", default=list(STEPS), choices=list(STEPS))
    ap.add_argument("--steps", nargs="+", default=[], metavar="NAME=N", help="override the training steps")
    ap.add_argument("--cluster", nargs="+", default=[], metavar="NAME=N", help="override examples per eval batch")
    ap.add_argument("--bootstrap", type=int, default=200, help="resamples")
    ap.add_argument("--seed", type=int, default=1, help="the trial's seed (detr's and gnn's targets were set with 0)")
    ap.add_argument("--bootstrap-seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    ap.add_argument("--data-dir", type=Path, default=Path("data"))
    args = ap.parse_args()
    steps, cluster = with_overrides(STEPS, args.steps), with_overrides(CLUSTER, args.cluster)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}; trial seed {args.seed}; bootstrap: {args.bootstrap} "
          f"resamples (seed {args.bootstrap_seed})", flush=True)
    start = time.perf_counter()
    rows = [measure(name, steps[name], cluster[name], args) for name in args.workloads]
    print("\n| workload | metric | target | eval set | metric at N steps | bootstrap SE "
          "| SE / \\|target - untrained\\| |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['metric']} | {r['target']:g} | {r['size']} | {r['value']:.4f} at {r['steps']:,} "
              f"| {r['se']:.4f} | {r['se_gap']:.3f} |")
    print(f"\ntotal {time.perf_counter() - start:.0f} s (" +
          ", ".join(f"{r['name']} {r['seconds']:.0f} s" for r in rows) + ")")


if __name__ == "__main__":
    main()
