"""Find and decode images in a folder, a .zip or a .tar(.gz); skip and count what cannot be used."""

from __future__ import annotations

import io
import logging
import os
import stat
import tarfile
import warnings
import zipfile
import zlib
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
MAX_FILE_BYTES = MAX_MEMBER_BYTES  # a single image file larger than this is skipped, never read
MAX_ARCHIVE_BYTES = 16 * 2**30  # default: an archive stops being read after this many uncompressed bytes (zip bombs)


@dataclass
class Skipped:
    """What was skipped and why, for the summary."""

    reasons: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, reason: str) -> None:
        self.reasons[reason] += 1
        self.examples.setdefault(reason, printable(name))

    @property
    def total(self) -> int:
        return sum(self.reasons.values())

    def summary(self) -> str:
        if not self.reasons:
            return "nothing skipped"
        parts = [f"{n} {r} (e.g. {self.examples[r]})" for r, n in self.reasons.most_common()]
        return f"skipped {self.total}: " + "; ".join(parts)


def printable(name: str) -> str:
    """A file name safe to print and store as JSON (non-UTF-8 bytes from the file system become \\xNN)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def unsafe_member_name(name: str) -> bool:
    """True for archive names that would land outside a target folder: absolute, '..', drive letters."""
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":")


def is_archive(path: Path) -> bool:
    """True for .zip and .tar(.gz/.bz2/.xz) files."""
    name = path.name.lower()
    return path.is_file() and any(name.endswith(s) for s in ARCHIVE_SUFFIXES)


def _has_image_ext(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def iter_members(
    path: Path, skipped: Skipped, max_archive_bytes: int = MAX_ARCHIVE_BYTES
) -> Iterator[tuple[str, bytes]]:
    """Yield (name, raw bytes) for every image-named file under `path`, in a stable sorted order.

    Archives are read in memory, never extracted: unsafe member names ('../x', '/x') are skipped, and reading
    stops after `max_archive_bytes` uncompressed bytes (the members after that are skipped and counted)."""
    if path.is_dir():
        yield from _iter_folder(path, skipped)
    elif path.name.lower().endswith(".zip"):
        yield from _iter_zip(path, skipped, max_archive_bytes)
    elif is_archive(path):
        yield from _iter_tar(path, skipped, max_archive_bytes)
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
            skipped.add(os.path.relpath(dirpath, root), "symlink loop")
            dirnames[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if _has_image_ext(name):
                reason = _file_problem(p)
                if reason:
                    skipped.add(str(p.relative_to(root)), reason)
                else:
                    found.append(p)
            elif not name.startswith("."):
                skipped.add(str(p.relative_to(root)), "not an image file name")
        # folders named like images (x.jpg/) are walked, never decoded
    return found


def _file_problem(p: Path) -> str:
    """Why an image-named path must not be read ('' if it may): FIFOs and devices block or never end."""
    try:
        st = p.stat()
    except OSError as e:  # dangling link, symlink loop, permission
        return f"unreadable file ({e.strerror or type(e).__name__})"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_size > MAX_FILE_BYTES:
        return "file too large"
    return ""


def _iter_folder(root: Path, skipped: Skipped) -> Iterator[tuple[str, bytes]]:
    for p in list_folder(root, skipped):
        rel = str(p.relative_to(root))
        try:
            with open(p, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)  # the file may have grown since it was listed
        except OSError as e:
            skipped.add(rel, f"unreadable file ({e.strerror or type(e).__name__})")
            continue
        if len(data) > MAX_FILE_BYTES:
            skipped.add(rel, "file too large")
            continue
        yield rel, data


def _iter_zip(path: Path, skipped: Skipped, limit: int) -> Iterator[tuple[str, bytes]]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"cannot open zip {path}: {e}") from None
    total = 0
    with zf:
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            if info.is_dir():
                continue
            if not _has_image_ext(info.filename):
                skipped.add(info.filename, "not an image file name")
                continue
            if unsafe_member_name(info.filename):
                skipped.add(info.filename, "unsafe path in archive")
                continue
            if info.file_size > MAX_MEMBER_BYTES:
                skipped.add(info.filename, "archive member too large")
                continue
            if total + info.file_size > limit:
                skipped.add(info.filename, "archive size limit reached")
                continue
            try:
                with zf.open(info) as f:  # the header's size may lie: never inflate past either limit
                    data = f.read(min(MAX_MEMBER_BYTES, limit - total) + 1)
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError, zlib.error) as e:
                skipped.add(info.filename, f"corrupt archive member ({type(e).__name__})")
                continue
            total += len(data)
            if len(data) > MAX_MEMBER_BYTES:
                skipped.add(info.filename, "archive member too large")
                continue
            if total > limit:
                skipped.add(info.filename, "archive size limit reached")
                continue
            yield info.filename, data


def _iter_tar(path: Path, skipped: Skipped, limit: int) -> Iterator[tuple[str, bytes]]:
    try:
        tf = tarfile.open(path)  # noqa: SIM115 - closed by the `with tf` below
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:  # EOFError: a cut .tar.gz
        raise DataError(f"cannot open tar {path}: {e}; is it complete?") from None
    with tf:
        try:
            listed = tf.getmembers()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise DataError(f"cannot read tar {path} ({type(e).__name__}: {e}); is it complete?") from None
        members = sorted((m for m in listed if m.isfile()), key=lambda m: m.name)
        total = 0
        for m in members:
            if not _has_image_ext(m.name):
                skipped.add(m.name, "not an image file name")
                continue
            if unsafe_member_name(m.name):
                skipped.add(m.name, "unsafe path in archive")
                continue
            if m.size > MAX_MEMBER_BYTES:
                skipped.add(m.name, "archive member too large")
                continue
            if total + m.size > limit:
                skipped.add(m.name, "archive size limit reached")
                continue
            try:
                f = tf.extractfile(m)
                data = f.read(MAX_MEMBER_BYTES + 1) if f else b""
            except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
                skipped.add(m.name, f"corrupt archive member ({type(e).__name__})")
                continue
            total += len(data)
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
