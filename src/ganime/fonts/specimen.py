"""Specimen sheets rendered *from font files* with Pillow (FreeType), so they show what an installed font draws."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PANGRAM = "The quick brown fox jumps over the lazy dog"
SPECIMEN_LINES = (PANGRAM, "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz", "0123456789")
INK, PAPER, CAPTION = 0, 255, 110


def load_font(font: bytes | str | Path, size: int) -> ImageFont.FreeTypeFont:
    """A Pillow font from font bytes or a path, at `size` pixels per em."""
    src = io.BytesIO(font) if isinstance(font, bytes) else str(font)
    return ImageFont.truetype(src, size, layout_engine=ImageFont.Layout.BASIC)


def covered(text: str, chars: Sequence[str]) -> str:
    """`text` without the characters the font lacks (spaces are always there)."""
    have = set(chars) | {" "}
    return "".join(c for c in text if c in have).strip()


def _line_image(font: ImageFont.FreeTypeFont, text: str, pad: int) -> Image.Image:
    left, _, right, _ = font.getbbox(text or " ", anchor="ls")
    ascent, descent = font.getmetrics()
    h = ascent + descent + 2 * pad
    img = Image.new("L", (max(right - min(left, 0), 1) + 2 * pad, h), PAPER)
    ImageDraw.Draw(img).text((pad - min(left, 0), pad + ascent), text, font=font, fill=INK, anchor="ls")
    return img


def _stack(rows: list[Image.Image], width: int | None = None) -> Image.Image:
    width = width or max(r.width for r in rows)
    sheet = Image.new("L", (width, sum(r.height for r in rows)), PAPER)
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height
    return sheet


def _caption(text: str, size: int) -> Image.Image:
    # captions in Pillow's built-in font, so they never depend on the generated font
    font = ImageFont.load_default(size=max(10, size))
    _, _, right, bottom = font.getbbox(text)
    img = Image.new("L", (right + 16, bottom + 12), PAPER)
    ImageDraw.Draw(img).text((8, 6), text, font=font, fill=CAPTION)
    return img


def specimen(font: bytes | str | Path, chars: Sequence[str], title: str = "", size: int = 48) -> Image.Image:
    """The pangram, A-Z, a-z and 0-9 (the characters the font has) drawn with the font, under a caption."""
    f = load_font(font, size)
    rows = [_caption(title, size // 3)] if title else []
    pad = max(2, size // 8)
    rows += [_line_image(f, covered(line, chars), pad) for line in SPECIMEN_LINES if covered(line, chars)]
    return _stack(rows)


def sheet(images: list[Image.Image], gap: int = 8) -> Image.Image:
    """Specimens one under another, separated by a thin rule."""
    rows = []
    width = max(i.width for i in images)
    for i, img in enumerate(images):
        if i:
            rule = Image.new("L", (width, gap), PAPER)
            ImageDraw.Draw(rule).line([(0, gap // 2), (width, gap // 2)], fill=200)
            rows.append(rule)
        rows.append(img)
    return _stack(rows, width)


def morph(
    fonts: list[bytes], chars: Sequence[str], text: str = PANGRAM, size: int = 40, labels: list[str] | None = None
) -> Image.Image:
    """One line of `text` per font, top to bottom: a style interpolation drawn from the font files."""
    rows = []
    pad = max(2, size // 10)
    for i, data in enumerate(fonts):
        line = _line_image(load_font(data, size), covered(text, chars) or "".join(chars), pad)
        if labels:
            cap = _caption(labels[i], size // 3)
            row = Image.new("L", (cap.width + line.width, max(cap.height, line.height)), PAPER)
            row.paste(cap, (0, (row.height - cap.height) // 2))
            row.paste(line, (cap.width, 0))
            line = row
        rows.append(line)
    return _stack(rows)


def save_image(img: Image.Image, path: str | Path) -> Path:
    """Write a PNG atomically."""
    from ganime.io import save_png

    return save_png(np.asarray(img.convert("L"))[..., None], path)
