"""Preparing ViT data, one folder per size under `<data_dir>/vit/<size>/`.

- smoke: Fashion-MNIST's four idx files (Debian's `dataset-fashion-mnist` installs them under
  /usr/share/datasets/fashion-mnist/), split 55,000 train / 5,000 val (the last 5,000 training
  images) / 10,000 test, written back as idx files.
- small, full: ImageNet-1k from the standard folders (`train/<wnid>/*.JPEG`; `val/<wnid>/*.JPEG`,
  or a flat `val/` with Kaggle's `LOC_val_solution.csv` beside it; optionally ImageNet-v2 as
  `v2/<class index or wnid>/*` for the test split), converted to image shards (images.py) with
  the shorter side at most 256 (full) or 72 (small) pixels, by a pool of worker processes.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from algobench.errors import UserError
from algobench.files import atomic_write, write_json
from workloads.vit.idx import IdxError, idx_bytes, read_idx
from workloads.vit.images import ShardWriter, encode_jpeg

READY = "READY.json"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
SMOKE_VAL = 5_000  # the last training images, held out for validation
STORE_SIDE = {"small": 72, "full": 256}  # pixels, the stored images' shorter side at most
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


def data_dir_for(data_dir: Path, size: str) -> Path:
    return Path(data_dir) / "vit" / size


def is_ready(size: str, data_dir: Path) -> bool:
    return (data_dir_for(data_dir, size) / READY).is_file()


def prepare(size: str, data_dir: Path, *, source: Path | None = None, shards: Path | None = None,
            workers: int | None = None) -> Path:
    """Build `<data_dir>/vit/<size>/` from `source` (smoke: a folder of Fashion-MNIST idx files,
    default Debian's; small/full: an ImageNet folder with train/ and val/, required)."""
    if shards is not None:
        raise UserError("--shards is for token shards (gpt2); vit reads --source (an ImageNet folder)")
    out = data_dir_for(data_dir, size)
    out.mkdir(parents=True, exist_ok=True)
    (out / READY).unlink(missing_ok=True)
    if size == "smoke":
        info = prepare_smoke(out, Path(source) if source else FASHION_MNIST_DIR)
    else:
        if source is None:
            raise UserError(f"vit {size} needs ImageNet, which cannot be downloaded for you (its licence): "
                            f"algobench data prepare vit --size {size} --source DIR (DIR holds train/ and val/)")
        info = prepare_imagenet(out, Path(source), store_side=STORE_SIDE[size], workers=workers)
    write_json(out / READY, info)
    return out


# --- smoke: Fashion-MNIST ---------------------------------------------------------------------

def _find_idx(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    if folder == FASHION_MNIST_DIR:
        raise UserError("the vit smoke data is Debian's Fashion-MNIST: apt-get install dataset-fashion-mnist "
                        "(or pass --source DIR with the four idx files)")
    raise UserError(f"{folder} has no {stem} (or {stem}.gz): --source must hold the four Fashion-MNIST idx files")


def prepare_smoke(out: Path, source: Path, *, val_examples: int = SMOKE_VAL) -> dict:
    arrays = {}
    for split, (images_name, labels_name) in IDX_FILES.items():
        try:
            images, labels = read_idx(_find_idx(source, images_name)), read_idx(_find_idx(source, labels_name))
        except IdxError as err:
            raise UserError(str(err)) from None
        if images.ndim != 3 or images.dtype != np.uint8 or labels.shape != (len(images),):
            raise UserError(f"{source}: {split} images {images.shape} {images.dtype} do not match labels {labels.shape}")
        arrays[split] = (images, labels)
    train_images, train_labels = arrays["train"]
    if len(train_images) <= val_examples:
        raise UserError(f"{source}: need more than {val_examples} training images, found {len(train_images)}")
    splits = {"train": (train_images[:-val_examples], train_labels[:-val_examples]),
              "val": (train_images[-val_examples:], train_labels[-val_examples:]),
              "test": arrays["test"]}
    for split, (images, labels) in splits.items():
        atomic_write(out / f"{split}-images-idx3-ubyte", idx_bytes(images))
        atomic_write(out / f"{split}-labels-idx1-ubyte", idx_bytes(labels))
    return {"source": str(source), "format": "idx", "classes": int(train_labels.max()) + 1,
            "counts": {split: len(labels) for split, (_, labels) in splits.items()}}


# --- small / full: ImageNet folders -> image shards ------------------------------------------

def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def scan_imagenet(root: Path) -> tuple[list[str], dict[str, list[tuple[Path, int]]]]:
    """Class names (sorted wnids of train/) and (path, label) pairs of each split found."""
    train = root / "train"
    if not train.is_dir() or not (root / "val").is_dir():
        raise UserError(f"{root} must hold ImageNet's train/ and val/ folders")
    classes = sorted(p.name for p in train.iterdir() if p.is_dir())
    if not classes:
        raise UserError(f"{train} holds no class folders (train/<wnid>/*.JPEG)")
    label_of = {wnid: i for i, wnid in enumerate(classes)}
    splits = {"train": _class_folders(train, label_of), "val": _val_split(root, label_of)}
    v2 = root / "v2"
    if v2.is_dir():  # ImageNet-v2 names folders by class index; accept wnids as well
        label_of_v2 = {**label_of, **{str(i): i for i in range(len(classes))}}
        splits["test"] = _class_folders(v2, label_of_v2)
    for split, items in splits.items():
        if not items:
            raise UserError(f"{root}: the {split} split holds no images")
    return classes, splits


def _class_folders(folder: Path, label_of: dict[str, int]) -> list[tuple[Path, int]]:
    items = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if sub.name not in label_of:
            raise UserError(f"{sub}: '{sub.name}' is not one of the {len(label_of)} training classes")
        items += [(path, label_of[sub.name]) for path in _images_in(sub)]
    return items


def _val_split(root: Path, label_of: dict[str, int]) -> list[tuple[Path, int]]:
    val = root / "val"
    if any(p.is_dir() for p in val.iterdir()):
        return _class_folders(val, label_of)
    solution = root / "LOC_val_solution.csv"
    if not solution.is_file():
        raise UserError(f"{val} is flat: sort it into val/<wnid>/ folders or put Kaggle's LOC_val_solution.csv "
                        f"in {root}")
    with open(solution) as f:
        wnid_of = {row["ImageId"]: row["PredictionString"].split()[0] for row in csv.DictReader(f)}
    items = []
    for path in _images_in(val):
        wnid = wnid_of.get(path.stem)
        if wnid is None or wnid not in label_of:
            raise UserError(f"{path.name}: no known class in {solution.name}")
        items.append((path, label_of[wnid]))
    return items


def _convert(job: tuple[str, int]) -> bytes:
    path, store_side = job
    with Image.open(path) as image:
        image.draft("RGB", (store_side, store_side))  # JPEG: decode at a reduced scale when much larger
        return encode_jpeg(image, store_side=store_side)


def _converted(paths: Iterable[Path], store_side: int, workers: int) -> Iterable[bytes]:
    jobs = ((str(p), store_side) for p in paths)
    if workers <= 1:
        yield from map(_convert, jobs)
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(_convert, jobs, chunksize=32)


def prepare_imagenet(out: Path, root: Path, *, store_side: int, workers: int | None = None) -> dict:
    from rich.progress import Progress

    classes, splits = scan_imagenet(root)
    workers = workers or max((os.cpu_count() or 1) - 1, 1)
    counts = {}
    with Progress(transient=True) as progress:
        for split, items in splits.items():
            task = progress.add_task(f"vit: {split} images", total=len(items))
            writer = ShardWriter(out, split)
            for (_, label), jpeg in zip(items, _converted((p for p, _ in items), store_side, workers)):
                writer.add(jpeg, label)
                progress.advance(task)
            counts[split] = writer.close()
    write_json(out / "classes.json", classes)
    return {"source": str(root), "format": "image shards", "store_side": store_side, "classes": len(classes),
            "counts": counts}
