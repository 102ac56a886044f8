"""The idx format of MNIST and Fashion-MNIST (LeCun et al.), read and written.

A file is: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D
float32, 0x0E float64), the number of dimensions, each dimension as a big-endian uint32, then the
values big-endian in C order. Files may be gzip-compressed (`.gz`), as distributed.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
             0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
IDX_CODES = {np.dtype(dt).newbyteorder(">").str: code for code, dt in IDX_TYPES.items()}


class IdxError(ValueError):
    pass


def parse_idx(data: bytes, name: str = "idx data") -> np.ndarray:
    """The array held by the bytes of an (uncompressed) idx file."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise IdxError(f"{name} is not an idx file (bad magic number)")
    dtype, ndim = IDX_TYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise IdxError(f"{name}: header says shape {shape}, so {expected} bytes; the file has {len(data)}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def read_idx(path: Path) -> np.ndarray:
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the suffix
        raw = gzip.decompress(raw)
    return parse_idx(raw, str(path))


def idx_bytes(array: np.ndarray) -> bytes:
    """The idx encoding of `array` (uint8, int8, int16, int32, float32 or float64)."""
    array = np.asarray(array)
    code = IDX_CODES.get(array.dtype.newbyteorder(">").str)
    if code is None:
        raise IdxError(f"idx has no type for {array.dtype}")
    dims = np.array(array.shape, dtype=">u4").tobytes()
    return bytes([0, 0, code, array.ndim]) + dims + array.astype(IDX_TYPES[code], copy=False).tobytes()
