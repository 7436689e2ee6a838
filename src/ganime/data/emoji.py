"""Render colour emoji from a colour font (e.g. Noto Color Emoji) into an RGBA data set.

Only single code points from the font's cmap are rendered; ZWJ sequences, skin-tone modifiers, keycaps and
flags (which need shaping of several code points) are left out on purpose.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ganime.data.builders_io import BuiltDataset
from ganime.errors import DataError, MissingDependencyError

log = logging.getLogger(__name__)

DEBIAN_NOTO_EMOJI = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
# CBDT bitmap fonts only load at their strike size; Noto Color Emoji has one strike, 109 px (136x128 bitmaps).
CBDT_STRIKE_SIZE = 109


@dataclass(frozen=True)
class EmojiBuildReport:
    cmap_codepoints: int
    requested: int
    rendered: int
    empty: int
    seconds: float


def codepoint_label(cp: int) -> str:
    """`0x1F600` -> `"U+1F600"`."""
    return f"U+{cp:04X}"


def parse_codepoint(label: str) -> int:
    """`"U+1F600"`, `"1f600"` or `"😀"` -> `0x1F600`."""
    text = label.strip()
    if len(text) == 1:
        return ord(text)
    if text[:2].upper() == "U+":
        text = text[2:]
    try:
        return int(text, 16)
    except ValueError:
        raise DataError(f"not a code point: {label!r} (use U+1F600, 1F600 or the character)") from None


def parse_codepoints(spec: str) -> list[int]:
    """`"1F600-1F64F, U+2764"` -> code points; items split on commas or spaces, `A-B` is an inclusive range."""
    out: list[int] = []
    for item in spec.replace(",", " ").split():
        start, sep, end = item.partition("-")
        if sep and start and end:
            lo, hi = parse_codepoint(start), parse_codepoint(end)
            if hi < lo:
                raise DataError(f"bad code point range {item!r}: the end comes before the start")
            out.extend(range(lo, hi + 1))
        else:
            out.append(parse_codepoint(item))
    if not out:
        raise DataError("--codepoints is empty: give code points or ranges such as '1F600-1F64F,2764'")
    return out


def font_codepoints(font_path: str | Path) -> list[int]:
    """Sorted single code points mapped by the font's cmap."""
    try:
        from fontTools.ttLib import TTFont
    except ImportError:
        raise MissingDependencyError("fontTools is needed: pip install 'ganime[fonts]'") from None
    try:
        with TTFont(str(font_path), lazy=True, fontNumber=0) as font:
            cmap = font.getBestCmap() or {}
    except Exception as e:  # fontTools raises many types for a non-font file
        raise DataError(f"cannot read font {font_path}: {e}") from e
    return sorted(cmap)


def _load_colour_font(font_path: Path) -> ImageFont.FreeTypeFont:
    # BASIC layout: raqm fails on control code points and would shape sequences we do not want here.
    for size in (CBDT_STRIKE_SIZE, 128, 136, 160):
        try:
            return ImageFont.truetype(str(font_path), size, layout_engine=ImageFont.Layout.BASIC)
        except OSError:
            continue  # bitmap fonts refuse sizes without a strike
    raise DataError(f"cannot load {font_path} as a colour font (tried sizes 109, 128, 136, 160)")


def _render_one(font: ImageFont.FreeTypeFont, char: str, size: int) -> np.ndarray | None:
    """RGBA (size, size, 4) with the ink centred in a square, or None when the glyph has no ink."""
    left, top, right, bottom = font.getbbox(char, mode="RGBA")
    w, h = max(1, right - left), max(1, bottom - top)
    canvas = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((-left, -top), char, font=font, embedded_color=True)
    ink = canvas.getbbox()  # transparent pixels are (0, 0, 0, 0): the alpha box
    if ink is None:
        return None
    # One square side per glyph box (not per ink box) keeps all emoji at the font's own relative scale.
    side = max(w, h, ink[2] - ink[0], ink[3] - ink[1])
    square = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    glyph = canvas.crop(ink)
    square.paste(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
    # Pillow resizes RGBA with premultiplied alpha, so transparent pixels do not bleed colour.
    out = square.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    arr = np.asarray(out, dtype=np.uint8).copy()
    arr[arr[..., 3] == 0, :3] = 0  # invisible pixels carry no colour: smaller npz, no hidden signal
    return arr


def render_emoji(
    font_path: str | Path = DEBIAN_NOTO_EMOJI,
    size: int = 64,
    codepoints: Iterable[int] | None = None,
) -> tuple[BuiltDataset, EmojiBuildReport]:
    """Render each single code point of a colour font (or `codepoints`) as RGBA `size` x `size`.

    Code points that are not in the cmap or that render without ink (space, ZWJ, tag characters) are skipped.
    """
    font_path = Path(font_path)
    if not font_path.is_file():
        raise DataError(f"font not found: {font_path} (Debian: apt-get install fonts-noto-color-emoji)")
    if not 8 <= size <= 1024:
        raise DataError(f"--size must be between 8 and 1024, got {size}")
    start = time.perf_counter()
    in_cmap = font_codepoints(font_path)
    wanted = in_cmap if codepoints is None else sorted(set(codepoints) & set(in_cmap))
    font = _load_colour_font(font_path)

    images, labels = [], []
    for cp in wanted:
        arr = _render_one(font, chr(cp), size)
        if arr is None:
            continue
        images.append(arr)
        labels.append(codepoint_label(cp))
    seconds = time.perf_counter() - start
    requested = len(in_cmap) if codepoints is None else len(set(codepoints))
    report = EmojiBuildReport(len(in_cmap), requested, len(images), len(wanted) - len(images), seconds)
    log.debug("emoji: rendered %d of %d code points in %.1f s", report.rendered, report.requested, seconds)
    if not images:
        raise DataError(f"no emoji rendered from {font_path}: is it a colour font with these code points?")
    dataset = BuiltDataset(
        images=np.stack(images),
        labels=np.array(labels, dtype=str),
        sources=np.array([font_path.name] * len(images), dtype=str),
    )
    return dataset, report
