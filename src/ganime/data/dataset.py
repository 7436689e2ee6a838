"""Decode a data source once into a uint8 cache (memory-mapped .npy) and serve it as an ImageDataset."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import os
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from ganime.data.sources import (
    IMAGE_EXTENSIONS,
    MAX_ARCHIVE_BYTES,
    Skipped,
    decode,
    is_archive,
    iter_members,
    list_folder,
    resize_center_crop,
    to_rgb,
)
from ganime.errors import DataError
from ganime.io import atomic_path, atomic_write_json

log = logging.getLogger(__name__)

CACHE_VERSION = 1
# built-in data sets shipped inside the package, by the short name `--data` takes
BUILTIN_DATASETS = {"faces": "dicebear-faces-64.npz", "emoji": "noto-emoji-64.npz"}
DEFAULT_DATASET = "faces"
SHIPPED_RESOLUTION = 64  # the built-in sets' image size
# runs made before the faces set existed stored data.path "" for the emoji set: "" keeps meaning that
LEGACY_EMPTY_PATH = "emoji"
CHUNK = 256
CHUNK_BYTES = 256 * 2**20  # raw bytes held at once while decoding: bounds memory on archives of huge members


@dataclass
class ImageDataset:
    """Decoded images as uint8 (N, H, W, C) plus optional integer labels."""

    images: np.ndarray
    source: str
    labels: np.ndarray | None = None  # int64 (N,) indices into `classes`
    classes: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)


def shipped_dataset_path(name: str = DEFAULT_DATASET) -> Path:
    """Path of a data set shipped inside the package ("faces" or "emoji")."""
    try:
        return Path(str(resources.files("ganime") / "assets" / BUILTIN_DATASETS[name]))
    except KeyError:
        raise DataError(f"no built-in data set {name!r}; built-in: {', '.join(BUILTIN_DATASETS)}") from None


def cache_root() -> Path:
    """Where ganime keeps what it can rebuild (data caches, statistics, runtime choices, reports):
    $GANIME_CACHE, else ~/.cache/ganime."""
    return Path(os.environ.get("GANIME_CACHE") or Path.home() / ".cache" / "ganime")


def default_cache_dir() -> Path:
    """$GANIME_CACHE/datasets, else ~/.cache/ganime/datasets."""
    return cache_root() / "datasets"


def resolve_source(path: str | Path | None) -> Path:
    """The file or folder to read: a built-in name ("faces", "emoji") unless a file or folder of that name
    exists; "" is the emoji set (what runs made before the faces set stored); a folder holding dataset.npz
    means that file."""
    if not path:
        return shipped_dataset_path(LEGACY_EMPTY_PATH)
    p = Path(path).expanduser()
    if str(path) in BUILTIN_DATASETS and not p.exists():
        return shipped_dataset_path(str(path))
    if not p.exists():
        raise DataError(
            f"data path {p} does not exist; pass a folder, .zip, .tar(.gz) or .npz of images, "
            f"or a built-in set: {', '.join(BUILTIN_DATASETS)}"
        )
    if p.is_dir() and (p / "dataset.npz").is_file():
        return p / "dataset.npz"
    return p


def native_size(path: str | Path | None, sample: int = 64) -> int:
    """The data's own image size in px: the short side of a .npz's images, or the median short side of the first
    `sample` images of a folder or archive (read from their headers, not decoded); 0 when none can be read."""
    src = resolve_source(path)
    if src.suffix.lower() == ".npz":
        try:
            with zipfile.ZipFile(src) as z, z.open("images.npy") as f:
                fmt = np.lib.format
                read = fmt.read_array_header_1_0 if fmt.read_magic(f) == (1, 0) else fmt.read_array_header_2_0
                shape = read(f)[0]  # the header only: no image is loaded
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            return 0
        return min(shape[1:3]) if len(shape) == 4 else 0
    sides = []
    try:
        for _, data in itertools.islice(iter_members(src, Skipped()), sample):
            try:
                with Image.open(io.BytesIO(data)) as img:
                    sides.append(min(img.size))
            except Exception:  # noqa: BLE001, S112 - an unreadable file says nothing about the size
                continue
    except DataError:
        return 0
    return int(np.median(sides)) if sides else 0


def _fingerprint(src: Path) -> str:
    """Key that changes when the source's files change (names, sizes, mtimes)."""
    h = hashlib.sha256()
    h.update(str(src.resolve()).encode())
    if src.is_dir():
        for p in list_folder(src, Skipped()):
            try:
                st = p.stat()
            except OSError:
                continue
            h.update(os.fsencode(p.relative_to(src)) + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    else:
        st = src.stat()
        h.update(f"{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def load_dataset(
    path: str | Path | None,
    resolution: int,
    channels: int = 3,
    background: tuple[int, int, int] = (255, 255, 255),
    cache_dir: str | Path | None = None,
    refresh: bool = False,
    max_archive_bytes: int = MAX_ARCHIVE_BYTES,
) -> ImageDataset:
    """Decode `path` at `resolution` (cached), returning uint8 NHWC images.

    Args:
        path: folder (recursive), .zip, .tar(.gz), or .npz with `images` (and optional `labels`).
        channels: 3 for RGB, 1 for grayscale.
        max_archive_bytes: stop reading a .zip/.tar after this many uncompressed bytes (zip bombs).
    """
    if max_archive_bytes < 1:
        raise DataError("the archive size limit must be positive (--max-archive-mb 1 or more)")
    src = resolve_source(path)
    if src == shipped_dataset_path(DEFAULT_DATASET) and resolution > SHIPPED_RESOLUTION:
        log.warning(
            "the shipped faces are %d px: at %d px they are upscaled and the model learns blurry faces; render "
            "sharp ones with `python scripts/build_faces_dataset.py --size %d --out data/faces-%d.npz` (needs node) "
            "and train with --data data/faces-%d.npz", SHIPPED_RESOLUTION, resolution, resolution, resolution, resolution,
        )
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    limit = f"|{max_archive_bytes}" if is_archive(src) and max_archive_bytes != MAX_ARCHIVE_BYTES else ""
    key = hashlib.sha256(
        f"{CACHE_VERSION}|{_fingerprint(src)}|{resolution}|{channels}|{tuple(background)}{limit}".encode()
    ).hexdigest()[:24]
    npy, meta_path = cache / f"{key}.npy", cache / f"{key}.json"
    if not refresh and npy.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            images = np.load(npy, mmap_mode="r")
            return _make(images, src, meta)
        except (OSError, ValueError, json.JSONDecodeError):
            log.warning("data cache %s is unreadable; rebuilding it", npy)

    t0 = time.perf_counter()
    if src.suffix.lower() == ".npz":
        images, labels, skipped, n_files = _from_npz(src, resolution, channels, background)
    else:
        images, labels, skipped, n_files = _from_files(src, resolution, channels, background, max_archive_bytes)
    seconds = time.perf_counter() - t0
    if len(images) == 0:
        raise DataError(
            f"no usable image in {src} ({skipped.summary()}); accepted formats: "
            f"{', '.join(IMAGE_EXTENSIONS)} in a folder, .zip or .tar(.gz), or a ganime .npz data set"
        )
    meta = {
        "source": str(src),
        "resolution": resolution,
        "channels": channels,
        "files_seen": n_files,
        "used": len(images),
        "skipped": dict(skipped.reasons),
        "skipped_examples": skipped.examples,
        "decode_seconds": round(seconds, 3),
        "decode_images_per_s": round(n_files / max(seconds, 1e-9), 1),
        "classes": sorted(set(labels)) if labels is not None else [],
        "labels": list(labels) if labels is not None else None,
    }
    _write_cache(cache, npy, meta_path, images, meta)
    log.info(
        "decoded %d images from %s in %.1f s (%.0f img/s); %s",
        len(images),
        src,
        seconds,
        meta["decode_images_per_s"],
        skipped.summary(),
    )
    return _make(np.load(npy, mmap_mode="r"), src, meta)


def _make(images: np.ndarray, src: Path, meta: dict) -> ImageDataset:
    labels = classes = None
    if meta.get("labels") is not None:
        classes = meta["classes"]
        index = {c: i for i, c in enumerate(classes)}
        labels = np.array([index[x] for x in meta["labels"]], dtype=np.int64)
    summary = {k: v for k, v in meta.items() if k != "labels"}
    return ImageDataset(images, str(src), labels, classes or [], summary)


def _write_cache(cache: Path, npy: Path, meta_path: Path, images: np.ndarray, meta: dict) -> None:
    try:
        with atomic_path(npy) as tmp:
            np.save(tmp, images)
        atomic_write_json(meta_path, meta, indent=None, sort_keys=False)
    except OSError as e:
        raise DataError(f"cannot write the data cache in {cache}: {e}; set --cache-dir or GANIME_CACHE") from None


def _to_channels(rgb: np.ndarray, channels: int) -> np.ndarray:
    if channels == 3:
        return rgb
    if channels == 1:
        return np.asarray(Image.fromarray(rgb, "RGB").convert("L"))[..., None]
    raise DataError(f"channels must be 1 or 3, got {channels}")


def _from_files(
    src: Path, resolution: int, channels: int, background: tuple[int, int, int], max_archive_bytes: int
) -> tuple[np.ndarray, None, Skipped, int]:
    if not (src.is_dir() or is_archive(src)):
        raise DataError(
            f"{src} is not a folder, .zip, .tar(.gz) or .npz; accepted images: {', '.join(IMAGE_EXTENSIONS)}"
        )
    skipped = Skipped()

    def work(item: tuple[str, bytes]) -> tuple[str, np.ndarray | str]:
        name, data = item
        try:
            return name, _to_channels(resize_center_crop(decode(data, background), resolution), channels)
        except ValueError as e:
            return name, str(e)
        except Exception as e:  # noqa: BLE001 - one bad file must never stop a data set build
            return name, f"undecodable ({type(e).__name__})"

    out: list[np.ndarray] = []
    n_files = 0
    # Pillow releases the GIL while decoding, so threads use every core without pickling images.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        chunk: list[tuple[str, bytes]] = []
        members = iter_members(src, skipped, max_archive_bytes)
        while True:
            chunk, held = [], 0
            for m in members:
                chunk.append(m)
                held += len(m[1])
                if len(chunk) >= CHUNK or held >= CHUNK_BYTES:
                    break
            if not chunk:
                break
            n_files += len(chunk)
            for name, res in pool.map(work, chunk):
                if isinstance(res, str):
                    skipped.add(name, res)
                else:
                    out.append(res)
    n_files += sum(v for k, v in skipped.reasons.items() if k in ("not an image file name",))
    images = np.stack(out) if out else np.zeros((0, resolution, resolution, channels), np.uint8)
    return images, None, skipped, n_files


def _from_npz(
    src: Path, resolution: int, channels: int, background: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray | None, Skipped, int]:
    try:
        with np.load(src, allow_pickle=False) as z:
            if "images" not in z:
                raise DataError(f"{src} has no 'images' array; a ganime .npz holds uint8 images (N, H, W, C)")
            raw = z["images"]
            labels = z["labels"].astype(str) if "labels" in z else None
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {src}: {e}") from None
    if raw.dtype != np.uint8 or raw.ndim != 4 or raw.shape[-1] not in (1, 3, 4):
        raise DataError(f"{src}: 'images' must be uint8 (N, H, W, C) with C in 1, 3, 4; got {raw.dtype} {raw.shape}")
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[raw.shape[-1]]
    if min(raw.shape[1:3]) < resolution and src != shipped_dataset_path(DEFAULT_DATASET):
        log.warning("%s holds %d px images: they are upscaled to %d px", src, min(raw.shape[1:3]), resolution)
    out = np.empty((len(raw), resolution, resolution, channels), np.uint8)
    for i, a in enumerate(raw):
        img = Image.fromarray(a[..., 0] if mode == "L" else a, mode)
        rgb = to_rgb(img, background)
        arr = np.asarray(rgb) if rgb.size == (resolution, resolution) else resize_center_crop(rgb, resolution)
        out[i] = _to_channels(arr, channels)
    return out, labels, Skipped(), len(raw)
