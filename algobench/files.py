"""Writing files atomically: bytes, JSON and parquet. The only implementation in the project.

Every results file, checkpoint and prepared dataset file goes through `atomic_write`, so a reader
(or a run killed with `kill -9` halfway) sees the old file or the new one, never a part.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from pathlib import Path
from typing import Any


def atomic_write(path: Path, data: bytes) -> None:
    """Make `path` hold `data`, all or nothing, even under `kill -9`.

    Linux: the bytes go into an unnamed O_TMPFILE in the target folder, are fsynced, and only
    then get a (hidden) name and are renamed over `path`: a killed writer leaves no partial file
    under any name. Elsewhere: a named temporary file, fsync, rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        try:
            _write_unnamed(path.parent, data, tmp)
        except OSError:  # no O_TMPFILE or /proc here: a named temporary file
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_unnamed(folder: Path, data: bytes, name: Path) -> None:
    fd = os.open(folder, getattr(os, "O_TMPFILE", 0) | os.O_WRONLY, 0o644)
    try:
        _write_all(fd, data)
        _link_unnamed(fd, name)
    finally:
        os.close(fd)


def _link_unnamed(fd: int, name: Path) -> None:
    """linkat(AT_SYMLINK_FOLLOW) of /proc/self/fd/N: gives the O_TMPFILE file a name."""
    proc = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.link(str(fd), name, src_dir_fd=proc, follow_symlinks=True)
    finally:
        os.close(proc)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, (json.dumps(data, indent=2, default=str, allow_nan=False) + "\n").encode())


def write_parquet(path: Path, df: Any) -> None:
    """`df`: a pandas DataFrame (pandas is imported by the caller that built it)."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write(path, buf.getvalue())
