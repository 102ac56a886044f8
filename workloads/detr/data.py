"""COCO-format detection data: one loader at every size.

`prepare.py` indexes a COCO instances JSON and its image folder into `<split>.npz` (see
`SplitIndex`); this module reads images (PIL), applies DETR's augmentation (random horizontal
flip; random resize of the shorter side with a cap on the longer; with probability `crop_prob`,
DETR's resize-crop-resize branch), normalizes with ImageNet statistics and pads a batch to a
common size with a padding mask (DETR's NestedTensor). Batches: `inputs` (B, 3, H, W) float,
`pad_mask` (B, H, W) bool or absent when no image is padded, `targets` (a `loss.Targets`:
objects concatenated, cxcywh in [0, 1] of each unpadded image), `image_ids` (B,) COCO ids and
`orig_sizes` (B, 2) as (height, width) for converting predictions back to COCO pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict

from workloads.detr.loss import Targets

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


class DataConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    train_scales: tuple[int, ...] = (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800)  # shorter side
    eval_scale: int = 800
    max_size: int = 1333  # longer side cap
    crop_prob: float = 0.5  # DETR's resize(400-600) -> random crop(384-600) -> resize branch
    flip_prob: float = 0.5
    pad_multiple: int = 32  # pad batches to a multiple of this (fewer distinct shapes)
    loader_workers: int = 4  # background processes decoding images; 0 = in the training loop
    cache_images: bool = False  # keep decoded images in memory (small data sets)
    eval_batch_size: int = 16


@dataclass(frozen=True)
class SplitIndex:
    """One split of a COCO-format data set, as `prepare.index_coco` writes it."""

    image_root: Path
    ann_file: Path  # the instances JSON (COCOeval reads it)
    file_names: np.ndarray  # (N,) str, relative to image_root
    image_ids: np.ndarray  # (N,) COCO image ids
    sizes: np.ndarray  # (N, 2) height, width
    box_ptr: np.ndarray  # (N + 1,) objects of image i are [box_ptr[i], box_ptr[i + 1])
    boxes: np.ndarray  # (n_objects, 4) float32 x, y, w, h in pixels (COCO's bbox)
    labels: np.ndarray  # (n_objects,) contiguous class index
    category_ids: np.ndarray  # (n_classes,) COCO category id of each class index

    def __len__(self) -> int:
        return len(self.file_names)


def save_index(path: Path, index: SplitIndex) -> None:
    np.savez(path, image_root=str(index.image_root), ann_file=str(index.ann_file), file_names=index.file_names,
             image_ids=index.image_ids, sizes=index.sizes, box_ptr=index.box_ptr, boxes=index.boxes,
             labels=index.labels, category_ids=index.category_ids)


def load_index(path: Path) -> SplitIndex:
    with np.load(path) as f:
        a = {k: f[k] for k in f.files}
    return SplitIndex(image_root=Path(str(a.pop("image_root"))), ann_file=Path(str(a.pop("ann_file"))), **a)


def read_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


# --- transforms on (image uint8 HWC, boxes xyxy pixels) ------------------------------------------

def resize(image: torch.Tensor, boxes: np.ndarray, shorter: int, max_size: int) -> tuple[torch.Tensor, np.ndarray]:
    """Resize `image` (3, H, W) float so its shorter side is `shorter`, longer side <= max_size."""
    h, w = image.shape[1:]
    scale = min(shorter / min(h, w), max_size / max(h, w))
    new_h, new_w = max(round(h * scale), 1), max(round(w * scale), 1)
    if (new_h, new_w) == (h, w):
        return image, boxes
    image = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)[0]
    return image, boxes * np.array([new_w / w, new_h / h, new_w / w, new_h / h], dtype=np.float32)


def random_crop(image: torch.Tensor, boxes: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                min_size: int, max_size: int):
    """DETR's RandomSizeCrop: a crop of random size in [min_size, max_size] (capped by the image);
    boxes are clipped to it and dropped when empty."""
    h, w = image.shape[1:]
    ch, cw = rng.integers(min(min_size, h), min(max_size, h) + 1), rng.integers(min(min_size, w), min(max_size, w) + 1)
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    image = image[:, top:top + ch, left:left + cw]
    boxes = boxes - np.array([left, top, left, top], dtype=np.float32)
    boxes = np.clip(boxes, 0, [cw, ch, cw, ch]).astype(np.float32)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return image, boxes[keep], labels[keep]


def transform(image: np.ndarray, boxes_xywh: np.ndarray, labels: np.ndarray, cfg: DataConfig,
              rng: np.random.Generator | None) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """(image (3, h, w) in [0, 1], boxes cxcywh in [0, 1], labels). rng None: eval transform."""
    img = torch.from_numpy(image).permute(2, 0, 1).float().div_(255)
    boxes = boxes_xywh.astype(np.float32).copy()
    boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
    if rng is None:
        img, boxes = resize(img, boxes, cfg.eval_scale, cfg.max_size)
    else:
        if rng.random() < cfg.flip_prob:
            img = img.flip(-1)
            boxes = np.stack([img.shape[2] - boxes[:, 2], boxes[:, 1], img.shape[2] - boxes[:, 0], boxes[:, 3]], -1)
        if rng.random() < cfg.crop_prob:
            img, boxes = resize(img, boxes, int(rng.choice([400, 500, 600])), cfg.max_size)
            img, boxes, labels = random_crop(img, boxes, labels, rng, 384, 600)
        img, boxes = resize(img, boxes, int(rng.choice(cfg.train_scales)), cfg.max_size)
    h, w = img.shape[1:]
    boxes = boxes.reshape(-1, 4) / np.array([w, h, w, h], dtype=np.float32)
    cxcywh = np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], -1)
    return img, cxcywh.astype(np.float32), labels.astype(np.int64)


# --- dataset, sampler, collate ---------------------------------------------------------------------

class CocoDetection(torch.utils.data.Dataset):
    """Item (i, aug_seed): image i transformed; aug_seed None gives the eval transform."""

    def __init__(self, index: SplitIndex, cfg: DataConfig) -> None:
        self.index, self.cfg = index, cfg
        self._cache: dict[int, np.ndarray] = {}

    def image(self, i: int) -> np.ndarray:
        if i in self._cache:
            return self._cache[i]
        image = read_image(self.index.image_root / str(self.index.file_names[i]))
        if self.cfg.cache_images:
            self._cache[i] = image
        return image

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: tuple[int, int | None]):
        i, aug_seed = item
        lo, hi = self.index.box_ptr[i], self.index.box_ptr[i + 1]
        rng = None if aug_seed is None else np.random.default_rng(aug_seed)
        image, boxes, labels = transform(self.image(i), self.index.boxes[lo:hi], self.index.labels[lo:hi], self.cfg, rng)
        return image, boxes, labels, int(self.index.image_ids[i]), tuple(int(s) for s in self.index.sizes[i])


def collate(items, pad_multiple: int) -> dict:
    images, boxes, labels, image_ids, orig_sizes = zip(*items, strict=True)
    h = max(im.shape[1] for im in images)
    w = max(im.shape[2] for im in images)
    h, w = -(-h // pad_multiple) * pad_multiple, -(-w // pad_multiple) * pad_multiple
    batch = torch.zeros((len(images), 3, h, w))
    mask = torch.ones((len(images), h, w), dtype=torch.bool)
    for k, im in enumerate(images):
        batch[k, :, :im.shape[1], :im.shape[2]] = im
        mask[k, :im.shape[1], :im.shape[2]] = False
    out = {"inputs": batch,
           "targets": Targets(torch.from_numpy(np.concatenate(labels)), torch.from_numpy(np.concatenate(boxes)),
                              tuple(len(b) for b in boxes)),
           "image_ids": torch.tensor(image_ids), "orig_sizes": torch.tensor(orig_sizes)}
    batch.sub_(IMAGENET_MEAN).div_(IMAGENET_STD)
    if any(im.shape[1:] != (h, w) for im in images):
        out["pad_mask"] = mask
        batch.masked_fill_(mask[:, None], 0.0)  # padding is zero after normalization, as in DETR
    return out


def to_device(batch: dict, device: torch.device) -> dict:
    pin = device.type == "cuda"
    out = {}
    for k, v in batch.items():
        if isinstance(v, Targets):
            out[k] = Targets(v.labels.pin_memory() if pin else v.labels, v.boxes.pin_memory() if pin else v.boxes,
                             v.sizes).to(device, non_blocking=pin)
        else:
            out[k] = (v.pin_memory() if pin else v).to(device, non_blocking=pin)
    return out


class TrainSampler(torch.utils.data.Sampler):
    """Infinite batches of (image, augmentation seed), deterministic from (seed, step): step s
    takes positions [s * B, (s + 1) * B) of a stream of per-epoch permutations; each rank its slice."""

    def __init__(self, n: int, *, seed: int, batch_size: int, rank: int, world_size: int, start_step: int) -> None:
        self.n, self.seed, self.batch_size = n, seed, batch_size
        self.rank, self.per_rank, self.start_step = rank, batch_size // world_size, start_step

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step, perm_epoch, perm = self.start_step, -1, None
        while True:
            pos = step * self.batch_size + self.rank * self.per_rank + np.arange(self.per_rank)
            batch = []
            for p in pos:
                if p // self.n != perm_epoch:
                    perm_epoch = int(p // self.n)
                    perm = np.random.default_rng([self.seed, perm_epoch]).permutation(self.n)
                batch.append((int(perm[p % self.n]), int(np.random.default_rng([self.seed, int(p), 1]).integers(2**62))))
            yield batch
            step += 1


def train_loader(index: SplitIndex, cfg: DataConfig, *, seed: int, batch_size: int, device: torch.device,
                 rank: int = 0, world_size: int = 1, start_step: int = 0) -> Iterator[dict]:
    from functools import partial

    sampler = TrainSampler(len(index), seed=seed, batch_size=batch_size, rank=rank, world_size=world_size,
                           start_step=start_step)
    loader = torch.utils.data.DataLoader(
        CocoDetection(index, cfg), batch_sampler=sampler, num_workers=cfg.loader_workers,
        collate_fn=partial(collate, pad_multiple=cfg.pad_multiple), persistent_workers=cfg.loader_workers > 0,
        prefetch_factor=4 if cfg.loader_workers > 0 else None)
    for batch in loader:
        yield to_device(batch, device)


def eval_loader(index: SplitIndex, cfg: DataConfig) -> Iterator[dict]:
    """The whole split in order with the eval transform (host tensors)."""
    from functools import partial

    order = [(i, None) for i in range(len(index))]
    batches = [order[k:k + cfg.eval_batch_size] for k in range(0, len(order), cfg.eval_batch_size)]
    yield from torch.utils.data.DataLoader(CocoDetection(index, cfg), batch_sampler=batches,
                                           num_workers=cfg.loader_workers,
                                           collate_fn=partial(collate, pad_multiple=cfg.pad_multiple))
