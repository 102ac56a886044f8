"""Preparing detection data: every size is a COCO-format data set (instances JSON + image files),
indexed into `<split>.npz` files that `data.py` reads.

- full, small: COCO 2017 from `--source DIR` holding `annotations/instances_{train,val}2017.json`
  and the `train2017/`, `val2017/` image folders (checked, then indexed; nothing is copied).
- smoke: generated offline in seconds: Fashion-MNIST items (Debian's `dataset-fashion-mnist`)
  scaled, tinted and pasted onto crops of the two photos scikit-learn ships
  (`load_sample_images`); 1-3 objects per 64x64 image, boxes from the items' masks, the 10
  Fashion-MNIST classes as categories; written as PNG files and COCO instances JSON.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np

from algobench.errors import UserError
from algobench.files import write_json
from workloads.detr.data import SplitIndex, save_index

READY = "READY.json"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
SMOKE_IMAGES = {"train": 1600, "val": 200, "test": 200}
SMOKE_SIZE = 64  # pixels, square
SMOKE_OBJECT_PX = (18, 40)  # longer side of a pasted item
COCO_SPLITS = {"train": "train2017", "val": "val2017"}


def data_dir_for(data_dir: Path, size: str) -> Path:
    return Path(data_dir) / "detr" / size


def is_ready(size: str, data_dir: Path) -> bool:
    return (data_dir_for(data_dir, size) / READY).is_file()


def prepare(size: str, data_dir: Path, *, source: Path | None = None, **unsupported) -> Path:
    """Build data/detr/<size>/{train,val[,test]}.npz. smoke: generated; small and full: the COCO
    2017 folder `source`."""
    if unsupported:
        raise UserError(f"data prepare detr does not take --{next(iter(unsupported))}; it takes --source DIR "
                        "(a COCO 2017 folder)")
    out = data_dir_for(data_dir, size)
    out.mkdir(parents=True, exist_ok=True)
    (out / READY).unlink(missing_ok=True)
    if size == "smoke" and source is None:
        splits = write_smoke(out / "coco")
    elif source is None:
        raise UserError(f"data prepare detr --size {size} needs --source DIR: a COCO 2017 folder with "
                        "annotations/instances_train2017.json, annotations/instances_val2017.json, train2017/ "
                        "and val2017/ (from cocodataset.org: 2017 Train/Val images and annotations)")
    else:
        splits = coco_2017_splits(Path(source))
    info = {split: index_coco(ann, images, out / f"{split}.npz") for split, (ann, images) in splits.items()}
    write_json(out / READY, {"source": str(source or out / "coco"), "splits": info})
    return out


def coco_2017_splits(root: Path) -> dict[str, tuple[Path, Path]]:
    splits = {}
    for ours, theirs in COCO_SPLITS.items():
        ann, images = root / "annotations" / f"instances_{theirs}.json", root / theirs
        if not ann.is_file() or not images.is_dir():
            raise UserError(f"{root} is not a COCO 2017 folder: missing {ann.relative_to(root) if not ann.is_file() else theirs + '/'}")
        splits[ours] = (ann, images)
    return splits


def index_coco(ann_file: Path, image_root: Path, out_file: Path) -> dict:
    """Check a COCO instances JSON against its image folder and write the split's index: crowd
    annotations and boxes without area are left out of the training targets (DETR does the
    same); COCOeval still reads the JSON itself."""
    try:
        coco = json.loads(Path(ann_file).read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{ann_file} is not valid JSON: {err}") from None
    for key in ("images", "annotations", "categories"):
        if key not in coco:
            raise UserError(f"{ann_file} is not a COCO instances file: no '{key}'")
    images = sorted(coco["images"], key=lambda im: im["id"])
    missing = [im["file_name"] for im in images if not (image_root / im["file_name"]).is_file()]
    if missing:
        raise UserError(f"{len(missing)} of {len(images)} images of {ann_file.name} are missing from {image_root}, "
                        f"e.g. {missing[0]}")
    category_ids = np.array(sorted(c["id"] for c in coco["categories"]), dtype=np.int64)
    class_of = {int(c): i for i, c in enumerate(category_ids)}
    row_of = {im["id"]: i for i, im in enumerate(images)}
    per_image: list[list[tuple[list[float], int]]] = [[] for _ in images]
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        if ann.get("iscrowd", 0) or w <= 0 or h <= 0 or ann["image_id"] not in row_of:
            continue
        per_image[row_of[ann["image_id"]]].append(([x, y, w, h], class_of[ann["category_id"]]))
    counts = np.array([len(objs) for objs in per_image], dtype=np.int64)
    flat = [obj for objs in per_image for obj in objs]
    index = SplitIndex(
        image_root=Path(image_root).resolve(), ann_file=Path(ann_file).resolve(),
        file_names=np.array([im["file_name"] for im in images]),
        image_ids=np.array([im["id"] for im in images], dtype=np.int64),
        sizes=np.array([[im["height"], im["width"]] for im in images], dtype=np.int64),
        box_ptr=np.concatenate([[0], np.cumsum(counts)]),
        boxes=np.array([b for b, _ in flat], dtype=np.float32).reshape(-1, 4),
        labels=np.array([c for _, c in flat], dtype=np.int64),
        category_ids=category_ids)
    save_index(out_file, index)
    return {"images": len(images), "objects": len(flat), "classes": len(category_ids)}


# --- smoke: Fashion-MNIST items on photo crops -----------------------------------------------------

def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format, gzipped): big-endian dims after a 4-byte magic."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    n_dims = data[3]
    dims = np.frombuffer(data, dtype=">u4", count=n_dims, offset=4)
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * n_dims).reshape(dims)


def fashion_mnist(part: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,)) of Fashion-MNIST's `train` or `t10k` part."""
    images, labels = FASHION_MNIST_DIR / f"{part}-images-idx3-ubyte.gz", FASHION_MNIST_DIR / f"{part}-labels-idx1-ubyte.gz"
    if not images.is_file():
        raise UserError("the DETR smoke data uses Fashion-MNIST: apt-get install dataset-fashion-mnist")
    return read_idx(images), read_idx(labels)


def sample_photos() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images

    return list(load_sample_images().images)


def compose_image(rng: np.random.Generator, photos: list[np.ndarray], items: np.ndarray, item_labels: np.ndarray,
                  size: int = SMOKE_SIZE) -> tuple[np.ndarray, list[tuple[list[float], int, float]]]:
    """One image: a random photo crop resized to `size`, with 1-3 tinted items pasted on it.
    Returns the image (size, size, 3) uint8 and [(bbox xywh, class, mask area)]."""
    from PIL import Image

    photo = photos[rng.integers(len(photos))]
    crop = int(rng.integers(96, min(photo.shape[:2])))
    top, left = rng.integers(0, photo.shape[0] - crop + 1), rng.integers(0, photo.shape[1] - crop + 1)
    background = Image.fromarray(photo[top:top + crop, left:left + crop]).resize((size, size), Image.BILINEAR)
    canvas = np.asarray(background).astype(np.float32) * 0.6  # dimmed, so the items stand out
    objects: list[tuple[list[float], int, float]] = []
    for _ in range(int(rng.integers(1, 4))):
        k = int(rng.integers(len(items)))
        item = items[k]
        ys, xs = np.nonzero(item > 30)
        item = item[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        longer = int(rng.integers(*SMOKE_OBJECT_PX))
        scale = longer / max(item.shape)
        h, w = max(round(item.shape[0] * scale), 4), max(round(item.shape[1] * scale), 4)
        alpha = np.asarray(Image.fromarray(item).resize((w, h), Image.BILINEAR)).astype(np.float32) / 255
        for _ in range(10):  # a place that does not cover an earlier item much
            y, x = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
            if all(_iou([x, y, w, h], b) < 0.3 for b, _, _ in objects):
                break
        else:
            continue
        color = rng.uniform(0.4, 1.0, size=3) * 255
        a = np.clip(alpha * 1.5, 0, 1)[..., None]
        canvas[y:y + h, x:x + w] = canvas[y:y + h, x:x + w] * (1 - a) + color * alpha[..., None] / alpha.max() * a
        ys, xs = np.nonzero(alpha > 0.2)
        box = [float(x + xs.min()), float(y + ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
        objects.append((box, int(item_labels[k]), float((alpha > 0.2).sum())))
    return np.clip(canvas, 0, 255).astype(np.uint8), objects


def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def write_smoke(root: Path, counts: dict[str, int] | None = None, seed: int = 0) -> dict[str, tuple[Path, Path]]:
    """Generate the smoke data set in COCO format under `root`: `<split>/NNNNNN.png` and
    `annotations/instances_<split>.json`. Train items come from Fashion-MNIST's train part,
    val and test items from its test part."""
    from PIL import Image

    shutil.rmtree(root, ignore_errors=True)
    (root / "annotations").mkdir(parents=True)
    photos = sample_photos()
    parts = {"train": fashion_mnist("train"), "eval": fashion_mnist("t10k")}
    categories = [{"id": i + 1, "name": name, "supercategory": "fashion"} for i, name in enumerate(FASHION_CLASSES)]
    splits, image_id, ann_id = {}, 1, 1
    for s, (split, n) in enumerate((counts or SMOKE_IMAGES).items()):
        items, labels = parts["train" if split == "train" else "eval"]
        rng = np.random.default_rng([seed, s])
        (root / split).mkdir()
        images, annotations = [], []
        for _ in range(n):
            pixels, objects = compose_image(rng, photos, items, labels)
            name = f"{image_id:06d}.png"
            Image.fromarray(pixels).save(root / split / name, compress_level=1)
            images.append({"id": image_id, "file_name": name, "height": SMOKE_SIZE, "width": SMOKE_SIZE})
            for box, label, area in objects:
                annotations.append({"id": ann_id, "image_id": image_id, "category_id": label + 1, "bbox": box,
                                    "area": area, "iscrowd": 0})
                ann_id += 1
            image_id += 1
        ann_file = root / "annotations" / f"instances_{split}.json"
        ann_file.write_text(json.dumps({"info": {"description": "algobench DETR smoke: Fashion-MNIST on photos"},
                                        "licenses": [], "images": images, "annotations": annotations,
                                        "categories": categories}))
        splits[split] = (ann_file, root / split)
    return splits
