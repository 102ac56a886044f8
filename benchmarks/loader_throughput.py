"""Can each workload's full-size training pipeline feed a GPU? Examples/s per loader worker.

    python benchmarks/loader_throughput.py [--workloads gpt2 vit bert gnn tts detr] [--batches 20]
                                           [--workers 1 2] [--out loader_throughput.json]

Data are generated in their real formats (tests/realdata.py: FineWeb shards, ImageNet JPEG
folders, COCO JSON + 640x480 JPEGs, LJSpeech wavs + TextGrids, molpcba csv, a Wikipedia dump)
and prepared by `data prepare`'s code; each pipeline is the full preset's `train_batches` at a
per-GPU batch (the global batch / 8 for the 8-GPU presets), on CPU, timed over `--batches`
batches after the first (worker start-up excluded). Pipelines with loader workers (vit, detr)
are timed at each `--workers` count; the others run in the training process (one core).

The needed rate per GPU comes from a published step time (`TARGETS`); the pipeline must reach
5x it (faster GPUs than the reference's) with the cores a GPU node gives each GPU: assumed 8
(H100 / A100 nodes have 8-16 cores per GPU).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from algobench.frameworks.torch import TorchBackend  # noqa: E402
from tests import realdata  # noqa: E402
from workloads import WORKLOADS  # noqa: E402

CORES_PER_GPU = 8
HEADROOM = 5
# workload: (examples/s one GPU must get, per-GPU batch, where the rate comes from)
TARGETS = {
    "gpt2": (3.53 * 512 / 8, 64, "llm.c GPT-2 124M on 8 A100: 19,073 steps of 512 x 1,024 tokens in ~90 min"),
    "vit": (186_666 / 69_768 * 1024 / 8, 128, "AlgoPerf imagenet_vit: step hint 186,666 in its 69,768 s budget, 8 V100"),
    "bert": (400_000 / 86_400 * 256, 256, "the preset's pace (Cramming: BERT-base in one day on one GPU), 256 rows"),
    "gnn": (80_000 / 12_011 * 512 / 8, 64, "AlgoPerf ogbg: step hint 80,000 in its 12,011 s budget, 8 V100, batch 512"),
    "tts": (160_000 / (17 * 3600) * 48, 48, "FastSpeech 2 paper: 160k steps at batch 48 in 17 h on one V100"),
    "detr": (300 * 118_287 / (3 * 86_400) / 16, 8, "DETR paper: 300 epochs of COCO train2017 in 3 days on 16 V100"),
}
IN_WORKERS = {"vit", "detr"}  # pipelines decoding in DataLoader worker processes


def _workload(name: str, data_dir: Path, workers: int):
    spec = WORKLOADS.get(name)
    preset = spec.presets["full"]
    cfg = preset.config
    if name == "vit":
        cfg = cfg.model_copy(update={"loader_workers": workers})
    elif name == "detr":
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"loader_workers": workers})})
    return spec.build_torch(preset=preset.model_copy(update={"config": cfg}), size="full", data_dir=data_dir,
                            backend=TorchBackend.choose("cpu"))


def examples_per_s(name: str, data_dir: Path, *, workers: int, batch: int, batches: int) -> float:
    stream = _workload(name, data_dir, workers).train_batches(seed=0, batch_size=batch)
    next(stream)  # worker start-up, caches
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    rate = batch * batches / (time.perf_counter() - start)
    del stream
    return rate


def _prepare(name: str, root: Path, batch: int) -> Path:
    if name == "detr":  # COCO-sized images: decoding and resizing to 800 is the cost
        spec = WORKLOADS.get("detr")
        spec.data.prepare("full", root / "data", source=realdata.coco_2017(root / "coco", train_images=2 * batch,
                                                                             width=640, height=480))
        return root / "data"
    return realdata.prepare(name, "full", root, examples=2 * batch)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", nargs="+", default=list(TARGETS))
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", type=Path, default=Path("loader_throughput.json"))
    args = ap.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.workloads:
            needed, batch, source = TARGETS[name]
            data_dir = _prepare(name, Path(tmp) / name, batch)
            counts = args.workers if name in IN_WORKERS else [0]
            rates = {w: examples_per_s(name, data_dir, workers=w, batch=batch, batches=args.batches) for w in counts}
            per_worker = rates[counts[0]] / max(counts[0], 1)
            workers_5x = HEADROOM * needed / per_worker
            rows.append({"workload": name, "pipeline": "loader workers" if name in IN_WORKERS else "training process",
                         "batch_per_gpu": batch, "examples_per_s": {str(w): r for w, r in rates.items()},
                         "per_worker": per_worker, "needed_per_gpu": needed, "source": source,
                         "workers_needed": needed / per_worker, "workers_for_5x": workers_5x,
                         "keeps_up_5x": workers_5x <= (CORES_PER_GPU if name in IN_WORKERS else 1)})
            print(_line(rows[-1]), flush=True)
    print("\n" + table(rows))
    args.out.write_text(json.dumps(rows, indent=1))
    return rows


def _line(r: dict) -> str:
    rates = ", ".join(f"{w} workers: {v:,.0f}/s" if w != "0" else f"{v:,.0f}/s" for w, v in r["examples_per_s"].items())
    return (f"{r['workload']}: {rates}; needs {r['needed_per_gpu']:,.0f}/s per GPU; "
            f"{r['workers_for_5x']:.2f} {'workers' if r['pipeline'] == 'loader workers' else 'cores'} for 5x")


def table(rows: list[dict]) -> str:
    lines = ["| workload | pipeline | batch/GPU | examples/s per worker (core) | needed/s per GPU | workers for 1x | "
             "workers for 5x | 5x with 8 cores/GPU |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['workload']} | {r['pipeline']} | {r['batch_per_gpu']} | {r['per_worker']:,.0f} | "
                     f"{r['needed_per_gpu']:,.0f} | {r['workers_needed']:.2f} | {math.ceil(r['workers_for_5x'] * 100) / 100:.2f} | "
                     f"{'yes' if r['keeps_up_5x'] else 'NO'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
