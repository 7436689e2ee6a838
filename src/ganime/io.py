"""Whole files or none: atomic writes (bytes, text, JSON, any writer that wants a path), PNG saving, grid tiling.

Every write goes to a temporary file in the target's folder (a dot name ending in `.tmp` plus the target's
suffix), is flushed to disk and renamed over the target: a crash or a full disk leaves the old file or the new
one, never half of one, and the temporary file is removed when the write fails. Errors are the OSError the
system gave; callers that owe their users another kind (a checkpoint, a data cache) wrap it themselves.

This module imports only the standard library, NumPy and Pillow: the torch-free runner (ganime.onnx_runtime)
and the data builders use it as the trainer does.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

FILE_MODE = 0o644  # mkstemp makes 0600 files; what is written here is an ordinary readable file


@contextmanager
def atomic_path(path: str | Path, *, fsync: bool = True) -> Iterator[Path]:
    """A temporary path next to `path` for a writer that wants a file name (np.save, savefig, torch.onnx.export,
    safetensors); renamed over `path` when the block ends without an error, removed otherwise.

    The temporary name keeps `path`'s suffix, so writers that pick a format by suffix pick the right one.
    fsync: flush the file to disk before the rename (False where a lost file is simply made again).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes, *, fsync: bool = True) -> Path:
    """Write `data` to `path` atomically (see the module doc); returns `path`."""
    path = Path(path)
    with atomic_path(path, fsync=False) as tmp, open(tmp, "wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    return path


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8", *, fsync: bool = True) -> Path:
    """Write `text` to `path` atomically, its newlines as given (no translation)."""
    return atomic_write_bytes(path, text.encode(encoding), fsync=fsync)


def atomic_write_json(
    path: str | Path, obj: Any, *, indent: int | None = 1, sort_keys: bool = True, newline: bool = False
) -> Path:
    """Write `obj` as JSON to `path` atomically: indent 1 and sorted keys (ganime's run files), newline=True
    adds a final line break."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys) + ("\n" if newline else "")
    return atomic_write_text(path, text)


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 HWC image (C = 1, 3 or 4) as PNG bytes."""
    arr = image[..., 0] if image.shape[-1] == 1 else image
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Save a uint8 HWC (C = 1, 3 or 4) array as PNG, atomically; returns `path`."""
    return atomic_write_bytes(path, png_bytes(image))


GRID_TILE = 64  # `ganime generate --grid` shows smaller images enlarged to at least this size


def make_grid(
    images: np.ndarray, nrow: int | None = None, padding: int = 2, pad_value: int = 255, min_tile: int = 0
) -> np.ndarray:
    """Tile uint8 NHWC images into one uint8 HWC image: `nrow` images per row (default: a square-ish grid),
    `padding` pixels of `pad_value` around and between them. Images smaller than `min_tile` px are enlarged by
    the smallest whole factor that reaches it, each pixel a block (what the model drew, at a size a person sees)."""
    if min_tile and 0 < images.shape[1] < min_tile:
        k = -(-min_tile // images.shape[1])
        images = images.repeat(k, axis=1).repeat(k, axis=2)
    n, h, w, c = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + padding) + padding, nrow * (w + padding) + padding, c), pad_value, np.uint8)
    for i, img in enumerate(images):
        r, k = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + k * (w + padding)
        grid[y : y + h, x : x + w] = img
    return grid


def utc_now(timespec: str = "seconds") -> str:
    """The time now in UTC as ISO 8601 ("2026-12-06T14:02:52+00:00"; `timespec` as datetime.isoformat's)."""
    return datetime.now(timezone.utc).isoformat(timespec=timespec)
