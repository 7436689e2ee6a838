"""Crop anime faces out of raw pictures with nagadomi's detector (the `animeface` package, `ganime[faces]`).

The geometry (scale boxes back from the upscaled detection image, expand by a margin, square, clamp or pad
at the borders, resize) is made of pure functions so it can be tested without the detector.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ganime.errors import DataError, MissingDependencyError
from ganime.io import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
DETECTOR_MIN_FACE = 43  # animeface scans a fixed smallest window; smaller faces are never found
MAX_DETECT_SIDE = 4096  # cap on the upscaled image's long side (detection time grows with area)
# animeface 2.0.x reads Pillow's internal image memory directly; Pillow >= 12 changed that layout and the
# detector then finds nothing in any image, without an error. Known good: Pillow 10.4 to 11.3.
PILLOW_KNOWN_GOOD = ((10, 4), (12, 0))  # [low, high)
FACES_FIX = "pip install 'Pillow>=10.4,<12' (or: pip install 'ganime[faces]')"


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in pixels: top-left corner and size (floats, before rounding)."""

    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class Detection:
    box: Box
    score: float  # animeface's likelihood, 0..1


Detector = Callable[[Image.Image], Sequence[Detection]]


# ----------------------------------------------------------------------------------------------- geometry
def detection_scale(width: int, height: int, min_face: int, max_side: int = MAX_DETECT_SIDE) -> float:
    """Upscale factor so that a face of `min_face` px reaches the detector's smallest window (>= 1)."""
    scale = max(1.0, DETECTOR_MIN_FACE / max(1, min_face))
    return max(1.0, min(scale, max_side / max(width, height, 1)))


def unscale_box(box: Box, scale: float) -> Box:
    """Map a box found in the image upscaled by `scale` back to the original image."""
    return Box(box.x / scale, box.y / scale, box.w / scale, box.h / scale)


def expand_to_square(box: Box, margin: float) -> Box:
    """Square around the box centre, `margin` x the face size added on every side."""
    side = max(box.w, box.h) * (1.0 + 2.0 * margin)
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    return Box(cx - side / 2, cy - side / 2, side, side)


def clamp_square(box: Box, width: int, height: int) -> tuple[int, int, int]:
    """Integer (left, top, side) of the square, shifted inside the image where it fits.

    Along an axis where the square is larger than the image it stays centred and sticks out on both sides
    (the crop pads those pixels).
    """
    side = max(1, round(box.w))
    left, top = round(box.x), round(box.y)

    def fit(start: int, limit: int) -> int:
        if side >= limit:
            return (limit - side) // 2
        return min(max(start, 0), limit - side)

    return fit(left, width), fit(top, height), side


def crop_square(image: Image.Image, left: int, top: int, side: int, size: int) -> Image.Image:
    """Crop the square (padding with the edge pixels outside the image) and resize it to `size`."""
    arr = np.asarray(image.convert("RGB"))
    h, w = arr.shape[:2]
    pad_l, pad_t = max(0, -left), max(0, -top)
    pad_r, pad_b = max(0, left + side - w), max(0, top + side - h)
    if pad_l or pad_t or pad_r or pad_b:
        arr = np.pad(arr, ((pad_t, pad_b), (pad_l, pad_r), (0, 0)), mode="edge")
    crop = arr[top + pad_t : top + pad_t + side, left + pad_l : left + pad_l + side]
    return Image.fromarray(crop).resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)


# ----------------------------------------------------------------------------------------------- detector
def synthetic_face(size: int = 128) -> Image.Image:
    """A simple drawn anime face (hair, bangs, big blue eyes) that animeface detects with likelihood ~1."""
    im = Image.new("RGB", (size, size), (255, 255, 255))
    d = ImageDraw.Draw(im)
    s = size / 400

    def pts(*xy: float) -> list[float]:
        return [v * s for v in xy]

    outline = max(1, int(3 * s))
    d.ellipse(pts(60, 40, 340, 330), fill=(120, 60, 30), outline=(0, 0, 0), width=outline)
    face = [(100, 140), (300, 140), (290, 260), (200, 340), (110, 260)]
    d.polygon([(x * s, y * s) for x, y in face], fill=(255, 224, 200), outline=(0, 0, 0))
    bangs = [(80, 160), (100, 60), (300, 60), (320, 160), (280, 120), (250, 170), (220, 110), (180, 170)]
    bangs += [(150, 115), (120, 175)]
    d.polygon([(x * s, y * s) for x, y in bangs], fill=(120, 60, 30), outline=(0, 0, 0))
    for cx in (155, 245):
        d.ellipse(
            pts(cx - 30, 185, cx + 30, 265), fill=(255, 255, 255), outline=(0, 0, 0), width=max(1, int(4 * s))
        )
        d.ellipse(pts(cx - 22, 195, cx + 22, 262), fill=(40, 90, 200))
        d.ellipse(pts(cx - 12, 210, cx + 12, 250), fill=(10, 20, 60))
        d.ellipse(pts(cx - 14, 200, cx - 2, 214), fill=(255, 255, 255))
        d.line(pts(cx - 34, 184, cx + 34, 180), fill=(0, 0, 0), width=max(1, int(6 * s)))
    d.line(pts(200, 280, 204, 284), fill=(0, 0, 0), width=max(1, int(2 * s)))
    d.arc(pts(180, 290, 220, 315), 20, 160, fill=(120, 0, 0), width=outline)
    return im


def _pillow_version() -> tuple[int, int]:
    import PIL

    major, minor = (int(p) for p in PIL.__version__.split(".")[:2])
    return major, minor


def pillow_known_good(version: tuple[int, int]) -> bool:
    low, high = PILLOW_KNOWN_GOOD
    return low <= version < high


def check_detector(detect: Detector, pillow_version: tuple[int, int] | None = None) -> None:
    """Run `detect` on the synthetic face, where it must fire; raise with the fix when it finds nothing."""
    version = pillow_version or _pillow_version()
    found = list(detect(synthetic_face(128)))
    if not found:
        where = "outside" if not pillow_known_good(version) else "inside"
        raise MissingDependencyError(
            f"the anime-face detector finds no face in its self-test image (Pillow {version[0]}.{version[1]}, "
            f"{where} the known-good range 10.4-11.x; animeface misreads Pillow >= 12 images and would find "
            f"nothing anywhere): {FACES_FIX}"
        )
    if not pillow_known_good(version):
        log.warning(
            "Pillow %d.%d is outside the range animeface is known to work with (10.4-11.x), "
            "but its self-test passed",
            *version,
        )


def animeface_detector() -> Detector:
    """nagadomi's detector via `animeface`, checked on a synthetic face before use."""
    try:
        import animeface
    except ImportError:
        raise MissingDependencyError(
            "cropping faces needs the animeface package: pip install 'ganime[faces]' "
            "(animeface>=2.0 with Pillow>=10.4,<12)"
        ) from None

    def detect(image: Image.Image) -> list[Detection]:
        faces = animeface.detect(image.convert("RGB"))
        out = []
        for f in faces:
            pos = f.face.pos
            out.append(Detection(Box(pos.x, pos.y, pos.width, pos.height), float(f.likelihood)))
        return out

    check_detector(detect)
    return detect


# ----------------------------------------------------------------------------------------------- builder
@dataclass(frozen=True)
class FaceCropReport:
    images: int = 0  # pictures read
    unreadable: int = 0
    without_faces: int = 0
    detected: int = 0
    low_score: int = 0
    too_small: int = 0
    written: int = 0

    def summary(self) -> str:
        return (
            f"{self.images} images ({self.unreadable} unreadable, {self.without_faces} without faces); "
            f"{self.detected} faces detected, {self.low_score} below --min-score, {self.too_small} below "
            f"--min-face; {self.written} crops written"
        )


def find_images(raw_dir: Path) -> list[Path]:
    return sorted(p for p in raw_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def detect_faces(image: Image.Image, detect: Detector, min_face: int) -> list[Detection]:
    """Run `detect` on `image` upscaled so faces of `min_face` px are found; boxes in original pixels."""
    scale = detection_scale(image.width, image.height, min_face)
    if scale > 1.0:
        big = (math.ceil(image.width * scale), math.ceil(image.height * scale))
        # Boxes map back with the actual per-axis factor (the rounded size differs slightly from scale).
        sx, sy = big[0] / image.width, big[1] / image.height
        found = detect(image.resize(big, Image.Resampling.BICUBIC))
        return [
            Detection(Box(d.box.x / sx, d.box.y / sy, d.box.w / sx, d.box.h / sy), d.score) for d in found
        ]
    return list(detect(image))


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "P", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _remove_previous_crops(out_dir: Path) -> None:
    """Delete the crops listed in an earlier `faces.csv` so a re-run leaves no stale files behind."""
    old_csv = out_dir / "faces.csv"
    if not old_csv.is_file():
        return
    with old_csv.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            index = row.get("index", "")
            if index.isdigit():
                (out_dir / f"{int(index):06d}.png").unlink(missing_ok=True)
    old_csv.unlink()


def crop_faces(
    raw_dir: str | Path,
    out_dir: str | Path,
    size: int = 64,
    margin: float = 0.25,
    min_face: int = 32,
    min_score: float = 0.5,
    detector: Detector | None = None,
) -> FaceCropReport:
    """Detect faces in every picture under `raw_dir`; write `size` px square crops and `faces.csv` to `out_dir`.

    Crops are named `000000.png`, ... after the `index` column of `faces.csv` (source, index, x, y, w, h,
    score), where x, y, w, h is the detected face box in the source picture's pixels.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if not raw_dir.is_dir():
        raise DataError(f"not a folder: {raw_dir}")
    if not 8 <= size <= 1024:
        raise DataError(f"--size must be between 8 and 1024, got {size}")
    if margin < 0:
        raise DataError(f"--margin must be >= 0, got {margin}")
    if min_face < 1:
        raise DataError(f"--min-face must be >= 1, got {min_face}")
    paths = find_images(raw_dir)
    if not paths:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {raw_dir}")
    detect = detector if detector is not None else animeface_detector()

    counts = dict.fromkeys(FaceCropReport.__dataclass_fields__, 0)
    rows: list[list[str | int | float]] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_previous_crops(out_dir)
    for path in paths:
        try:
            with Image.open(path) as opened:
                image = _to_rgb(opened)
        except (OSError, ValueError) as e:
            log.warning("skipping unreadable image %s: %s", path, e)
            counts["unreadable"] += 1
            continue
        counts["images"] += 1
        found = detect_faces(image, detect, min_face)
        counts["detected"] += len(found)
        if not found:
            counts["without_faces"] += 1
        for det in found:
            if det.score < min_score:
                counts["low_score"] += 1
                continue
            if max(det.box.w, det.box.h) < min_face:
                counts["too_small"] += 1
                continue
            left, top, side = clamp_square(expand_to_square(det.box, margin), image.width, image.height)
            crop = crop_square(image, left, top, side, size)
            index = len(rows)
            png = io.BytesIO()
            crop.save(png, format="PNG")
            # one of thousands of crops, made again by running again: not fsynced one by one
            atomic_write_bytes(out_dir / f"{index:06d}.png", png.getvalue(), fsync=False)
            b = det.box
            rows.append(
                [path.relative_to(raw_dir).as_posix(), index, round(b.x), round(b.y), round(b.w), round(b.h)]
                + [round(det.score, 4)]
            )
    counts["written"] = len(rows)

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["source", "index", "x", "y", "w", "h", "score"])
    writer.writerows(rows)
    atomic_write_text(out_dir / "faces.csv", text.getvalue())
    report = FaceCropReport(**counts)
    log.debug("faces: %s", report.summary())
    return report
