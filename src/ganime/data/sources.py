"""Find and decode images in a folder, a .zip or a .tar(.gz); skip and count what cannot be used."""

from __future__ import annotations

import io
import logging
import os
import tarfile
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ganime.errors import DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
MAX_MEMBER_BYTES = 64 * 2**20  # an image member larger than this in an archive is refused (zip bombs)
MAX_PIXELS = 64 * 2**20  # decompression-bomb guard: larger images are skipped, not decoded


@dataclass
class Skipped:
    """What was skipped and why, for the summary."""

    reasons: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, reason: str) -> None:
        self.reasons[reason] += 1
        self.examples.setdefault(reason, name)

    @property
    def total(self) -> int:
        return sum(self.reasons.values())

    def summary(self) -> str:
        if not self.reasons:
            return "nothing skipped"
        parts = [f"{n} {r} (e.g. {self.examples[r]})" for r, n in self.reasons.most_common()]
        return f"skipped {self.total}: " + "; ".join(parts)


def is_archive(path: Path) -> bool:
    """True for .zip and .tar(.gz/.bz2/.xz) files."""
    name = path.name.lower()
    return path.is_file() and any(name.endswith(s) for s in ARCHIVE_SUFFIXES)


def _has_image_ext(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def iter_members(path: Path, skipped: Skipped) -> Iterator[tuple[str, bytes]]:
    """Yield (name, raw bytes) for every image-named file under `path`, in a stable sorted order."""
    if path.is_dir():
        yield from _iter_folder(path, skipped)
    elif path.name.lower().endswith(".zip"):
        yield from _iter_zip(path, skipped)
    elif is_archive(path):
        yield from _iter_tar(path, skipped)
    else:
        raise DataError(
            f"{path} is not a folder, .zip or .tar archive of images "
            f"(accepted images: {', '.join(IMAGE_EXTENSIONS)}; or a ganime .npz data set)"
        )


def list_folder(root: Path, skipped: Skipped) -> list[Path]:
    """Image-named files below `root` (recursive, sorted, symlink loops and unreadable dirs skipped)."""
    found: list[Path] = []
    seen_dirs: set[tuple[int, int]] = set()

    def onerror(err: OSError) -> None:
        skipped.add(str(err.filename), "unreadable folder")

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=onerror):
        try:
            st = os.stat(dirpath)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:  # symlink loop
            skipped.add(dirpath, "symlink loop")
            dirnames[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if _has_image_ext(name):
                found.append(p)
            elif not name.startswith("."):
                skipped.add(str(p.relative_to(root)), "not an image file name")
        # folders named like images (x.jpg/) are walked, never decoded
    return found


def _iter_folder(root: Path, skipped: Skipped) -> Iterator[tuple[str, bytes]]:
    for p in list_folder(root, skipped):
        rel = str(p.relative_to(root))
        try:
            yield rel, p.read_bytes()
        except OSError as e:
            skipped.add(rel, f"unreadable file ({e.strerror or e})")


def _iter_zip(path: Path, skipped: Skipped) -> Iterator[tuple[str, bytes]]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"cannot open zip {path}: {e}") from None
    with zf:
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            if info.is_dir():
                continue
            if not _has_image_ext(info.filename):
                skipped.add(info.filename, "not an image file name")
                continue
            if info.file_size > MAX_MEMBER_BYTES:
                skipped.add(info.filename, "archive member too large")
                continue
            try:
                with zf.open(info) as f:
                    data = f.read(MAX_MEMBER_BYTES + 1)
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as e:
                skipped.add(info.filename, f"corrupt archive member ({type(e).__name__})")
                continue
            if len(data) > MAX_MEMBER_BYTES:
                skipped.add(info.filename, "archive member too large")
                continue
            yield info.filename, data


def _iter_tar(path: Path, skipped: Skipped) -> Iterator[tuple[str, bytes]]:
    try:
        tf = tarfile.open(path)
    except (tarfile.TarError, OSError) as e:
        raise DataError(f"cannot open tar {path}: {e}") from None
    with tf:
        members = sorted((m for m in tf.getmembers() if m.isfile()), key=lambda m: m.name)
        for m in members:
            if not _has_image_ext(m.name):
                skipped.add(m.name, "not an image file name")
                continue
            if m.size > MAX_MEMBER_BYTES:
                skipped.add(m.name, "archive member too large")
                continue
            try:
                f = tf.extractfile(m)
                data = f.read() if f else b""
            except (tarfile.TarError, OSError, EOFError) as e:
                skipped.add(m.name, f"corrupt archive member ({type(e).__name__})")
                continue
            yield m.name, data


def decode(data: bytes, background: tuple[int, int, int]) -> Image.Image:
    """Decode bytes to an RGB image (first frame; alpha composited on `background`).

    Raises ValueError with a short reason when the bytes are not a usable image.
    """
    if not data:
        raise ValueError("zero-byte file")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
            if img.width * img.height > MAX_PIXELS:
                raise ValueError("image too large (decompression bomb guard)")
            img.seek(0)
            img.load()
        except UnidentifiedImageError:
            raise ValueError("not an image") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ValueError("image too large (decompression bomb guard)") from None
        except (OSError, SyntaxError, EOFError) as e:
            msg = str(e).lower()
            reason = "truncated image" if "truncated" in msg or "broken" in msg else "corrupt image"
            raise ValueError(reason) from None
    return to_rgb(img, background)


def to_rgb(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Any Pillow mode -> RGB, with transparency composited onto `background`."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "RGB" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    return img.convert("RGB")


def resize_center_crop(img: Image.Image, size: int) -> np.ndarray:
    """Resize the shorter side to `size`, centre-crop to size x size (torchvision Resize + CenterCrop)."""
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.BILINEAR)  # PIL's bilinear is antialiased
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)
