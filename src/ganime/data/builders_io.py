"""Save a built data set: `dataset.npz` (images, labels, sources), `labels.csv` and `preview.png`.

Format read by the data loader: `images` uint8 (N, H, W, C) with C = 4 (RGBA) or 1 (grayscale, dark ink on
a white 255 background); `labels` unicode (N,); optional `sources` unicode (N,), e.g. the font file name.
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ganime.errors import DataError
from ganime.io import atomic_write_bytes, atomic_write_text, make_grid

PREVIEW_MAX_ITEMS = 256


@dataclass(frozen=True)
class BuiltDataset:
    """Images with one label (and optionally one source) each."""

    images: np.ndarray  # uint8 (N, H, W, C)
    labels: np.ndarray  # unicode (N,)
    sources: np.ndarray | None = None  # unicode (N,)

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] not in (1, 3, 4):
            raise ValueError(
                f"images must be uint8 (N, H, W, C), got {self.images.dtype} {self.images.shape}"
            )
        n = len(self.images)
        if self.labels.shape != (n,) or (self.sources is not None and self.sources.shape != (n,)):
            raise ValueError("labels and sources need one entry per image")

    def __len__(self) -> int:
        return len(self.images)


@dataclass(frozen=True)
class SavedPaths:
    dataset: Path
    labels_csv: Path
    preview: Path


def npz_bytes(arrays: dict[str, np.ndarray], compresslevel: int = 6) -> bytes:
    """What `np.savez_compressed` writes, but byte-reproducible (fixed zip timestamps) and at any level."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            zf.writestr(
                info, member.getvalue(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=compresslevel
            )
    return buf.getvalue()


def save_npz(dataset: BuiltDataset, path: str | Path, compresslevel: int = 6) -> Path:
    """Write `dataset` as a compressed `.npz` (loadable with `np.load`) atomically."""
    arrays = {"images": dataset.images, "labels": dataset.labels.astype(str)}
    if dataset.sources is not None:
        arrays["sources"] = dataset.sources.astype(str)
    path = Path(path)
    atomic_write_bytes(path, npz_bytes(arrays, compresslevel))
    return path


def composite_white(rgba: np.ndarray) -> np.ndarray:
    """RGBA `over` a white background: uint8 (..., 4) -> uint8 (..., 3)."""
    rgb = rgba[..., :3].astype(np.float32)
    alpha = rgba[..., 3:].astype(np.float32) / 255.0
    return np.rint(rgb * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)


def preview_grid(images: np.ndarray, max_items: int = PREVIEW_MAX_ITEMS) -> Image.Image:
    """Tile up to `max_items` images in a square-ish grid without padding; RGBA is composited on white."""
    images = images[:max_items]
    if images.shape[-1] == 4:
        images = composite_white(images)
    grid = make_grid(images, padding=0)
    return Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)


def save_dataset(dataset: BuiltDataset, out_dir: str | Path) -> SavedPaths:
    """Write `out_dir/dataset.npz`, `out_dir/labels.csv` (index,label,source) and `out_dir/preview.png`."""
    if len(dataset) == 0:
        raise DataError("nothing to save: the builder produced no images")
    out_dir = Path(out_dir)
    paths = SavedPaths(out_dir / "dataset.npz", out_dir / "labels.csv", out_dir / "preview.png")
    save_npz(dataset, paths.dataset)

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["index", "label", "source"])
    sources = dataset.sources if dataset.sources is not None else [""] * len(dataset)
    for i, (label, source) in enumerate(zip(dataset.labels, sources)):
        writer.writerow([i, str(label), str(source)])
    atomic_write_text(paths.labels_csv, text.getvalue())

    png = io.BytesIO()
    preview_grid(dataset.images).save(png, format="PNG")
    atomic_write_bytes(paths.preview, png.getvalue())
    return paths
