"""Image shards: JPEGs packed for fast random access, and the crops a ViT recipe trains on.

On disk, per split: `<split>_00000.bin`, ... (JPEG files back to back, about 1 GiB each) and
`<split>.index.npy` (one record per image: shard number, byte offset, byte length, class label),
read through memory maps, so a loader worker reads an image with one slice and decodes it with
Pillow. The converter stores each image re-encoded as RGB JPEG with its shorter side at most
`store_side` pixels, which bounds decoding time (FFCV's recipe).
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from algobench.errors import UserError
from algobench.files import atomic_write

INDEX_DTYPE = np.dtype([("shard", "<u2"), ("offset", "<u8"), ("length", "<u4"), ("label", "<i4")])
SHARD_BYTES = 1 << 30


class ImageShardError(UserError):
    pass


# --- writing --------------------------------------------------------------------------------

def encode_jpeg(image: Image.Image, *, store_side: int, quality: int = 90) -> bytes:
    """`image` as RGB JPEG bytes, downscaled so that its shorter side is at most `store_side`."""
    image = image.convert("RGB")
    short = min(image.size)
    if short > store_side:
        scale = store_side / short
        size = (max(round(image.width * scale), 1), max(round(image.height * scale), 1))
        image = image.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


class ShardWriter:
    """Appends JPEGs of one split; shards get their final names only when complete."""

    def __init__(self, folder: Path, split: str, shard_bytes: int = SHARD_BYTES) -> None:
        self.folder, self.split, self.shard_bytes = Path(folder), split, shard_bytes
        self.records: list[tuple[int, int, int, int]] = []
        self.shard, self.offset, self.file = -1, 0, None

    def _roll(self) -> None:
        self._close_shard()
        self.shard += 1
        self.offset = 0
        self.file = open(self._path(self.shard, tmp=True), "wb")

    def _path(self, shard: int, tmp: bool = False) -> Path:
        name = f"{self.split}_{shard:05d}.bin"
        return self.folder / (f".{name}.tmp" if tmp else name)

    def _close_shard(self) -> None:
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self._path(self.shard, tmp=True), self._path(self.shard))
            self.file = None

    def add(self, jpeg: bytes, label: int) -> None:
        if self.file is None or self.offset + len(jpeg) > self.shard_bytes:
            self._roll()
        self.file.write(jpeg)
        self.records.append((self.shard, self.offset, len(jpeg), label))
        self.offset += len(jpeg)

    def close(self) -> int:
        """Finish the last shard and write the index; the number of images."""
        self._close_shard()
        index = np.array(self.records, dtype=INDEX_DTYPE)
        buf = io.BytesIO()
        np.save(buf, index)
        atomic_write(self.folder / f"{self.split}.index.npy", buf.getvalue())
        return len(index)


# --- reading --------------------------------------------------------------------------------

class ImageShards:
    """Random access to one split's JPEGs and labels; memory maps open lazily (per process)."""

    def __init__(self, folder: Path, split: str) -> None:
        self.folder, self.split = Path(folder), split
        path = self.folder / f"{split}.index.npy"
        if not path.is_file():
            raise ImageShardError(f"{path} is missing: no '{split}' split in {folder}")
        self.index = np.load(path)
        if self.index.dtype != INDEX_DTYPE:
            raise ImageShardError(f"{path}: unexpected record type {self.index.dtype}")
        self._maps: dict[int, np.memmap] = {}

    def __len__(self) -> int:
        return len(self.index)

    @property
    def labels(self) -> np.ndarray:
        return self.index["label"]

    def jpeg(self, i: int) -> bytes:
        shard, offset, length, _ = self.index[i]
        if shard not in self._maps:
            self._maps[int(shard)] = np.memmap(self.folder / f"{self.split}_{int(shard):05d}.bin", dtype=np.uint8,
                                               mode="r")
        return self._maps[int(shard)][int(offset):int(offset) + int(length)].tobytes()

    def image(self, i: int) -> Image.Image:
        return Image.open(io.BytesIO(self.jpeg(i))).convert("RGB")


# --- crops ----------------------------------------------------------------------------------

def random_resized_crop_box(width: int, height: int, rng: np.random.Generator, *,
                            scale: tuple[float, float] = (0.08, 1.0),
                            ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """Inception-style crop (Szegedy et al. 2015, as torchvision's RandomResizedCrop): a box of
    random area fraction in `scale` and log-uniform aspect ratio in `ratio`; 10 tries, then
    the whole image clamped to `ratio`. Returns (left, top, right, bottom) in pixels."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            return left, top, left + w, top + h
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def center_crop_box(width: int, height: int, crop_frac: float) -> tuple[int, int, int, int]:
    """The central square of side `crop_frac` x the shorter side: resizing it to S equals
    resizing the shorter side to S / crop_frac and cropping S x S in the middle (224 of 256)."""
    side = crop_frac * min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return round(left), round(top), round(left + side), round(top + side)


def train_crop(image: Image.Image, size: int, rng: np.random.Generator) -> np.ndarray:
    """Random resized crop to size x size and a horizontal flip half the time: (size, size, 3) uint8."""
    box = random_resized_crop_box(image.width, image.height, rng)
    out = image.resize((size, size), Image.Resampling.BILINEAR, box=box)
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(out)


def eval_crop(image: Image.Image, size: int, crop_frac: float = 0.875) -> np.ndarray:
    out = image.resize((size, size), Image.Resampling.BILINEAR, box=center_crop_box(image.width, image.height,
                                                                                     crop_frac))
    return np.asarray(out)
