"""Render font glyphs (e.g. A-Z a-z 0-9 from many fonts) into a grayscale data set: dark ink on white.

Every glyph sits on one common baseline row and is centred horizontally. Each font gets one scale, chosen from
the ink extents of the requested characters in that font, so an alphabet keeps its proportions ('x' stays
shorter than 'H') and no glyph of the set leaves the cell.
"""

from __future__ import annotations

import fnmatch
import logging
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ganime.data.builders_io import BuiltDataset
from ganime.errors import DataError, MissingDependencyError

log = logging.getLogger(__name__)

FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc")
_MEASURE_PX = 200  # em size used to measure ink extents before the per-font scale is chosen
_INK_THRESHOLD = 255  # any pixel darker than the white background is ink (faint anti-aliasing too)


def parse_charset(spec: str) -> list[str]:
    """`"A-Za-z0-9"` -> the 62 characters, in order, without duplicates.

    `X-Y` is an inclusive range; a `-` at either end is literal; `\\-` and `\\\\` escape a hyphen or backslash.
    """
    chars: list[str] = []
    i = 0
    while i < len(spec):
        c = spec[i]
        if c == "\\" and i + 1 < len(spec):
            chars.append(spec[i + 1])
            i += 2
            continue
        if i + 2 < len(spec) and spec[i + 1] == "-":
            end = spec[i + 2]
            if ord(end) < ord(c):
                raise DataError(f"bad range {c}-{end} in --chars {spec!r}: the end comes before the start")
            chars.extend(chr(cp) for cp in range(ord(c), ord(end) + 1))
            i += 3
            continue
        chars.append(c)
        i += 1
    unique = list(dict.fromkeys(chars))
    if not unique:
        raise DataError("--chars is empty: give characters or ranges such as 'A-Za-z0-9'")
    return unique


def find_font_files(paths: Iterable[str | Path]) -> list[Path]:
    """Font files given directly, plus those found recursively under given folders (sorted, unique)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in FONT_SUFFIXES))
        elif p.is_file():
            found.append(p)
        else:
            raise DataError(f"font file or folder not found: {p}")
    return list(dict.fromkeys(found))


@dataclass
class FontReport:
    """What happened to one font face."""

    name: str  # file name, plus `#index` for faces of a collection
    path: Path
    face_index: int = 0
    coverage: float = 0.0  # fraction of the requested characters the cmap maps to a real glyph
    symbol: bool = False
    skipped: str | None = None  # reason, when the face was not used
    rendered: int = 0
    missing: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GlyphBuildReport:
    chars: list[str]
    fonts: list[FontReport]

    @property
    def used(self) -> list[FontReport]:
        return [f for f in self.fonts if f.skipped is None]

    @property
    def skipped(self) -> list[FontReport]:
        return [f for f in self.fonts if f.skipped is not None]

    @property
    def rendered(self) -> int:
        return sum(f.rendered for f in self.fonts)

    @property
    def missing(self) -> int:
        return sum(len(f.missing) for f in self.used)

    def skip_reasons(self) -> Counter[str]:
        return Counter(f.skipped.split(":")[0] for f in self.skipped if f.skipped)

    def summary(self) -> str:
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(self.skip_reasons().items())) or "none"
        return (
            f"{len(self.chars)} characters; fonts: {len(self.used)} used, {len(self.skipped)} skipped "
            f"({reasons}); glyphs: {self.rendered} rendered, {self.missing} missing"
        )


@dataclass(frozen=True)
class _Face:
    report: FontReport
    cmap: dict[int, str]  # code point -> glyph name, with `.notdef` targets removed
    symbol_cmap_only: bool = False  # no Unicode cmap: FreeType reaches glyphs as U+F020-U+F0FF

    def draw_char(self, ch: str) -> str:
        """The character to hand to FreeType for `ch`."""
        if self.symbol_cmap_only and 0x20 <= ord(ch) <= 0xFF:
            return chr(0xF000 + ord(ch))
        return ch


def _face_count(path: Path) -> int:
    with path.open("rb") as f:
        head = f.read(12)
    if head[:4] == b"ttcf":
        return int.from_bytes(head[8:12], "big")
    return 1


def _read_faces(path: Path) -> list[_Face]:
    try:
        from fontTools.ttLib import TTFont
    except ImportError:
        raise MissingDependencyError("fontTools is needed: pip install 'ganime[fonts]'") from None
    try:
        n_faces = _face_count(path)
    except OSError as e:
        return [_Face(FontReport(path.name, path, skipped=f"unreadable: {e}"), {})]
    faces = []
    for index in range(n_faces):
        name = path.name if n_faces == 1 else f"{path.name}#{index}"
        report = FontReport(name, path, index)
        try:
            # our own file handle: TTFont leaves the one it opens unclosed when the file is not a font
            with path.open("rb") as file, TTFont(file, lazy=True, fontNumber=index) as font:
                subtables = font["cmap"].tables if "cmap" in font else []
                # Symbol fonts (cmap platform 3 encoding 0, or OS/2 code page bit 31) put dingbats on Latin
                # code points (shifted to U+F0xx); the glyphs are not letters even when they render.
                os2 = font.get("OS/2")
                codepage_symbol = bool(
                    os2 is not None and os2.version >= 1 and os2.ulCodePageRange1 >> 31 & 1
                )
                report.symbol = codepage_symbol or any(
                    t.platformID == 3 and t.platEncID == 0 for t in subtables
                )
                cmap = dict(font.getBestCmap() or {})
                symbol_cmap_only = not cmap
                if symbol_cmap_only:
                    for t in subtables:
                        if t.platformID == 3 and t.platEncID == 0:
                            cmap.update(
                                {cp - 0xF000 if 0xF020 <= cp <= 0xF0FF else cp: g for cp, g in t.cmap.items()}
                            )
                glyph_order = font.getGlyphOrder()
                notdef = glyph_order[0] if glyph_order else ".notdef"
        except Exception as e:  # noqa: BLE001 - fontTools raises many types for a broken or non-font file
            report.skipped = f"unreadable: {type(e).__name__}: {e}"
            faces.append(_Face(report, {}))
            continue
        cmap = {cp: g for cp, g in cmap.items() if g not in (".notdef", notdef)}
        faces.append(_Face(report, cmap, symbol_cmap_only))
    return faces


def _load_pil_font(face: _Face, size: float) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(
        str(face.report.path),
        size,
        index=face.report.face_index,
        encoding="symb" if face.symbol_cmap_only else "",
        layout_engine=ImageFont.Layout.BASIC,
    )


def _ink_box(font: ImageFont.FreeTypeFont, ch: str) -> tuple[int, int, int, int] | None:
    """Ink box (left, top, right, bottom; right/bottom exclusive) relative to the baseline origin, or None."""
    # getbbox spans the advance as well as the ink, so draw the glyph and look at its pixels.
    left, top, right, bottom = font.getbbox(ch, anchor="ls")
    if right <= left or bottom <= top:
        return None
    canvas = Image.new("L", (right - left + 2, bottom - top + 2), 255)
    ImageDraw.Draw(canvas).text((1 - left, 1 - top), ch, font=font, fill=0, anchor="ls")
    ink = np.asarray(canvas) < _INK_THRESHOLD
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        return None
    return (
        int(cols[0]) - 1 + left,
        int(rows[0]) - 1 + top,
        int(cols[-1]) + left,
        int(rows[-1]) + top,
    )


def _extents(
    face: _Face, font: ImageFont.FreeTypeFont, chars: Sequence[str]
) -> tuple[float, float, float, list[str]]:
    """Max ascent, max descent and max ink width over `chars` (in em units) and the chars with no ink."""
    ascent = descent = width = 0.0
    empty = []
    for ch in chars:
        box = _ink_box(font, face.draw_char(ch))
        if box is None:
            empty.append(ch)
            continue
        left, top, right, bottom = box
        ascent = max(ascent, -top / _MEASURE_PX)
        descent = max(descent, bottom / _MEASURE_PX)
        width = max(width, (right - left) / _MEASURE_PX)
    return ascent, descent, width, empty


def _render_glyph(font: ImageFont.FreeTypeFont, ch: str, size: int, baseline: int) -> np.ndarray | None:
    """(size, size) uint8 with the glyph's ink centred horizontally and its baseline on row `baseline`."""
    canvas = Image.new("L", (3 * size, size), 255)
    ImageDraw.Draw(canvas).text((size, baseline), ch, font=font, fill=0, anchor="ls")
    arr = np.asarray(canvas)
    cols = np.flatnonzero((arr < _INK_THRESHOLD).any(axis=0))
    if cols.size == 0:
        return None
    left = round((cols[0] + cols[-1] + 1) / 2 - size / 2)
    left = min(max(left, 0), 2 * size)
    return arr[:, left : left + size].copy()


def _touches_border(arr: np.ndarray) -> bool:
    return bool(
        (arr[0] < _INK_THRESHOLD).any()
        or (arr[-1] < _INK_THRESHOLD).any()
        or (arr[:, 0] < _INK_THRESHOLD).any()
        or (arr[:, -1] < _INK_THRESHOLD).any()
    )


def _render_face(
    face: _Face, chars: Sequence[str], em_px: float, size: int, baseline: int
) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """Rendered (char, image) pairs and the chars whose ink vanished at this size."""
    font = _load_pil_font(face, em_px)
    rendered, empty = [], []
    for ch in chars:
        arr = _render_glyph(font, face.draw_char(ch), size, baseline)
        if arr is None:
            empty.append(ch)
        else:
            rendered.append((ch, arr))
    return rendered, empty


def render_glyphs(
    font_paths: Iterable[str | Path],
    chars: str | Sequence[str] = "A-Za-z0-9",
    size: int = 64,
    min_coverage: float = 1.0,
    exclude: Iterable[str] = (),
    include_symbol_fonts: bool = False,
) -> tuple[BuiltDataset, GlyphBuildReport]:
    """Render `chars` from every usable font face into (N, size, size, 1) uint8 images, labels = the character.

    Faces are skipped when their file name matches an `exclude` glob, when they are symbol fonts (unless
    `include_symbol_fonts`), or when they map fewer than `min_coverage` of the characters. Within a used
    face, a character that is unmapped, mapped to `.notdef` or without ink is skipped and counted as missing.
    """
    char_list = parse_charset(chars) if isinstance(chars, str) else list(dict.fromkeys(chars))
    if not char_list:
        raise DataError("no characters requested")
    if not 8 <= size <= 1024:
        raise DataError(f"--size must be between 8 and 1024, got {size}")
    if not 0.0 <= min_coverage <= 1.0:
        raise DataError(f"--min-coverage must be between 0 and 1, got {min_coverage}")
    files = find_font_files(font_paths)
    if not files:
        raise DataError("no font files (.ttf .otf .ttc .otc) found in the given paths")
    patterns = [p.lower() for p in exclude]

    faces: list[_Face] = []
    for path in files:
        if any(fnmatch.fnmatchcase(path.name.lower(), p) for p in patterns):
            faces.append(_Face(FontReport(path.name, path, skipped="excluded: matches --exclude"), {}))
            continue
        faces.extend(_read_faces(path))

    # Pass 1: coverage and ink extents in em units, per face.
    measured: list[tuple[_Face, list[str], float, float, float]] = []
    for face in faces:
        rep = face.report
        if rep.skipped:
            continue
        present = [ch for ch in char_list if ord(ch) in face.cmap]
        rep.coverage = len(present) / len(char_list)
        if rep.symbol and not include_symbol_fonts:
            rep.skipped = "symbol font: maps dingbats on Latin code points (--include-symbol-fonts to keep)"
            continue
        if rep.coverage < min_coverage:
            rep.skipped = f"low coverage: {rep.coverage:.0%} < {min_coverage:.0%}"
            continue
        try:
            font = _load_pil_font(face, _MEASURE_PX)
        except OSError as e:
            rep.skipped = f"unreadable: {e}"
            continue
        ascent, descent, width, empty = _extents(face, font, present)
        if ascent + descent <= 0 or width <= 0:
            rep.skipped = "no ink: none of the requested glyphs draws anything"
            continue
        rep.missing = [ch for ch in char_list if ch not in present or ch in empty]
        measured.append((face, [ch for ch in present if ch not in empty], ascent, descent, width))
    if not measured:
        reasons = GlyphBuildReport(char_list, [f.report for f in faces]).skip_reasons()
        why = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
        best = max((f.report.coverage for f in faces), default=0.0)
        raise DataError(
            f"no usable font among {len(faces)} faces ({why}; best coverage {best:.0%}): add fonts with these "
            "characters, lower --min-coverage, or change --exclude / --include-symbol-fonts"
        )

    # One baseline row for all fonts: the median share of the set's height that lies above the baseline.
    pad = max(1, round(size * 0.04))
    inner = size - 2 * pad - 2  # 1 px slack on each side: hinting and anti-aliasing widen small glyphs
    above = statistics.median(a / (a + d) for _, _, a, d, _ in measured)
    baseline = pad + 1 + round(above * inner)

    images, labels, sources = [], [], []
    for face, present, ascent, descent, width in measured:
        # Room above and below the baseline; at least half a pixel, so a round letter's tiny overshoot
        # below the baseline in a set without descenders cannot shrink the glyphs to nothing.
        room_above, room_below = max(baseline - pad - 1, 0.5), max(size - pad - 1 - baseline, 0.5)
        limits = [inner / width]
        if ascent > 0:
            limits.append(room_above / ascent)
        if descent > 0:
            limits.append(room_below / descent)
        em_px = min(limits)
        rendered, empty = _render_face(face, present, em_px, size, baseline)
        for _ in range(3):
            # Hinting can still push a glyph a pixel or two past what was measured at the large size.
            if not any(_touches_border(arr) for _, arr in rendered):
                break
            em_px *= 1.0 - 2.0 / size
            rendered, empty = _render_face(face, present, em_px, size, baseline)
        for ch, arr in rendered:
            images.append(arr[..., None])
            labels.append(ch)
            sources.append(face.report.name)
        face.report.rendered = len(rendered)
        face.report.missing = sorted(set(face.report.missing) | set(empty), key=char_list.index)

    report = GlyphBuildReport(char_list, [f.report for f in faces])
    log.debug("glyphs: %s", report.summary())
    if not images:
        raise DataError(f"no glyph drew any ink at {size} px: {report.summary()}")
    dataset = BuiltDataset(
        images=np.stack(images),
        labels=np.array(labels, dtype=str),
        sources=np.array(sources, dtype=str),
    )
    return dataset, report
