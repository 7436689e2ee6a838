"""Build an installable TrueType (.ttf, quadratic glyf) or OpenType/CFF (.otf, cubic) font from glyph bitmaps.

Geometry: a bitmap cell of S x S pixels becomes exactly one em (units per em / S units per pixel), with the
baseline where the flat-bottomed letters of the set stand. Rendered at S pixels per em, a glyph lands on the
pixels it was traced from. Advances are the glyph's ink width plus a fixed side bearing on each side.
"""

from __future__ import annotations

import io
import logging
import re
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ganime.errors import ConfigError, MissingDependencyError
from ganime.fonts.trace import Contour, Segment, orient, trace_bitmap

log = logging.getLogger(__name__)

UNITS_PER_EM = 1000
SIDE_BEARING = 0.04  # of the em, on each side of the ink
SPACE_ADVANCE = 0.28  # of the em
# Characters whose ink stands on the baseline with a flat (not round, not descending) bottom.
FLAT_BOTTOM = set("ABDEFHIKLMNPRTUVWXYZabdfhiklmnrtuvwxz1247")
FORMATS = ("ttf", "otf")


@dataclass(frozen=True)
class FontInfo:
    """Names written into the font's name table."""

    family: str
    style: str = "Regular"
    version: str = "1.000"
    description: str = ""

    @property
    def full_name(self) -> str:
        return f"{self.family} {self.style}" if self.style != "Regular" else self.family

    @property
    def ps_name(self) -> str:
        # PostScript names: printable ASCII without spaces or ()[]{}<>/%, at most 63 characters
        clean = re.sub(r"[^A-Za-z0-9-]", "", self.family) or "Ganime"
        return f"{clean}-{re.sub(r'[^A-Za-z0-9]', '', self.style) or 'Regular'}"[:63]


@dataclass
class BuiltFont:
    """A font file in memory plus what happened while building it."""

    data: bytes
    flavor: str  # ttf | otf
    chars: list[str]
    empty: list[str] = field(default_factory=list)  # characters whose bitmap had no ink (empty glyphs)
    baseline_px: float = 0.0  # baseline height above the bitmap's bottom edge, in pixels

    def save(self, path: str | Path) -> Path:
        """Write the font atomically."""
        from ganime.io import atomic_write_bytes

        return atomic_write_bytes(Path(path), self.data)


def flavor_for(path: str | Path) -> str:
    """'ttf' or 'otf' from a file name; anything else is a user error."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise ConfigError(f"font file {path} must end in .ttf (TrueType) or .otf (OpenType/CFF)")
    return suffix


def glyph_name(ch: str) -> str:
    """The Adobe Glyph List name ('A', 'zero', 'exclam'), else uniXXXX / uXXXXX."""
    from fontTools.agl import UV2AGL

    cp = ord(ch)
    return UV2AGL.get(cp) or (f"uni{cp:04X}" if cp <= 0xFFFF else f"u{cp:05X}")


def estimate_baseline(outlines: Mapping[str, list[Contour]]) -> float:
    """Baseline height (pixels above the cell's bottom): median ink bottom of flat-bottomed letters."""
    bottoms = {ch: min(float(c.polygon()[:, 1].min()) for c in cs) for ch, cs in outlines.items() if cs}
    flat = [y for ch, y in bottoms.items() if ch in FLAT_BOTTOM]
    pool = flat or list(bottoms.values())
    return statistics.median(pool) if pool else 0.0


def build_font(
    bitmaps: Mapping[str, np.ndarray],
    info: FontInfo,
    flavor: str = "ttf",
    upscale: int = 4,
    baseline_px: float | None = None,
) -> BuiltFont:
    """One glyph per character from uint8 bitmaps (dark ink on white, all S x S), as .ttf or .otf bytes."""
    try:
        from fontTools.fontBuilder import FontBuilder
        from fontTools.pens.boundsPen import BoundsPen
        from fontTools.pens.cu2quPen import Cu2QuPen
        from fontTools.pens.t2CharStringPen import T2CharStringPen
        from fontTools.pens.ttGlyphPen import TTGlyphPen
    except ImportError:
        raise MissingDependencyError("writing fonts needs fontTools: pip install 'ganime[fonts]'") from None
    if flavor not in FORMATS:
        raise ConfigError(f"font format {flavor!r} unknown; use ttf or otf")
    chars = [c for c in bitmaps if c != " "]
    if not chars:
        raise ConfigError("no glyphs to put in the font")
    if any(len(c) != 1 for c in chars):
        raise ConfigError(f"font glyphs need single characters, got {[c for c in chars if len(c) != 1][:5]}")
    sizes = {np.asarray(b).shape[:2] for b in bitmaps.values()}
    if len(sizes) != 1 or next(iter(sizes))[0] != next(iter(sizes))[1]:
        raise ConfigError(f"glyph bitmaps must all be square and the same size, got {sorted(sizes)}")
    cell = next(iter(sizes))[0]

    outlines = {ch: trace_bitmap(bitmaps[ch], upscale=upscale) for ch in chars}
    empty = [ch for ch in chars if not outlines[ch]]
    base = estimate_baseline(outlines) if baseline_px is None else float(baseline_px)
    upm = UNITS_PER_EM
    scale = upm / cell
    sb = round(SIDE_BEARING * upm)
    ascender, descender = round((cell - base) * scale), -round(base * scale)
    cff = flavor == "otf"

    def draw(pen, contours: list[Contour]) -> None:
        for c in contours:
            segs = list(c.segments)
            if segs and not segs[-1].controls and segs[-1].end == c.start:
                segs.pop()  # closePath draws the closing line
            pen.moveTo(c.start)
            for s in segs:
                if s.controls:
                    pen.curveTo(*s.controls, s.end)
                else:
                    pen.lineTo(s.end)
            pen.closePath()

    # .notdef: the customary empty box
    w = round(0.5 * upm)
    box_top = round(0.7 * ascender) if ascender > 0 else round(0.7 * upm)
    t = round(0.06 * upm)
    notdef = [
        Contour((sb, 0), tuple(_lines([(sb + w, 0), (sb + w, box_top), (sb, box_top)]))),
        Contour((sb + t, t), tuple(_lines([(sb + t, box_top - t), (sb + w - t, box_top - t), (sb + w - t, t)]))),
    ]
    notdef = orient(notdef, outer_ccw=cff)
    glyphs: dict[str, list[Contour]] = {".notdef": notdef, "space": []}
    advances: dict[str, int] = {".notdef": w + 2 * sb, "space": round(SPACE_ADVANCE * upm)}
    cmap = {0x20: "space"}
    for ch in chars:
        name = glyph_name(ch)
        cs = outlines[ch]
        if cs:
            xmin = min(float(c.polygon()[:, 0].min()) for c in cs)
            xmax = max(float(c.polygon()[:, 0].max()) for c in cs)

            def to_units(p, xmin=xmin):
                return (round((p[0] - xmin) * scale + sb), round((p[1] - base) * scale))

            cs = orient([c.transformed(to_units) for c in cs], outer_ccw=cff)
            advances[name] = round((xmax - xmin) * scale) + 2 * sb
        else:
            advances[name] = advances["space"]
        glyphs[name] = cs
        cmap[ord(ch)] = name

    order = list(glyphs)
    fb = FontBuilder(upm, isTTF=not cff)
    fb.font.recalcTimestamp = False  # the same glyphs give the same bytes
    fb.setupGlyphOrder(order)
    fb.setupCharacterMap(cmap)
    metrics = {}
    if cff:
        charstrings = {}
        for name in order:
            pen = T2CharStringPen(advances[name], None)
            draw(pen, glyphs[name])
            charstrings[name] = pen.getCharString()
            bounds = BoundsPen(None)
            draw(bounds, glyphs[name])
            metrics[name] = (advances[name], round(bounds.bounds[0]) if bounds.bounds else 0)
        fb.setupCFF(info.ps_name, {"FullName": info.full_name, "FamilyName": info.family}, charstrings, {})
    else:
        ttglyphs = {}
        for name in order:
            pen = TTGlyphPen(None)
            # cubic -> quadratic within 1 unit (a thousandth of the em)
            draw(Cu2QuPen(pen, max_err=1.0, reverse_direction=False), glyphs[name])
            ttglyphs[name] = pen.glyph()
        fb.setupGlyf(ttglyphs)
        glyf = fb.font["glyf"]
        for name in order:
            # left side bearing = xMin of the quadratic outline, as the glyf table will record it
            glyf[name].recalcBounds(glyf)
            metrics[name] = (advances[name], getattr(glyf[name], "xMin", 0))
    fb.setupHorizontalMetrics(metrics)
    fb.setupHorizontalHeader(ascent=ascender, descent=descender)

    ys = [p for cs in glyphs.values() for c in cs for p in c.polygon()[:, 1]]
    y_max, y_min = (max(ys), min(ys)) if ys else (ascender, descender)

    def height(ch: str, fallback: float) -> int:
        cs = glyphs.get(glyph_name(ch)) if ch in chars else None
        return round(max(float(c.polygon()[:, 1].max()) for c in cs)) if cs else round(fallback)

    fb.setupNameTable(
        {
            "familyName": info.family,
            "styleName": info.style,
            "uniqueFontIdentifier": f"ganime: {info.full_name}: {info.version}",
            "fullName": info.full_name,
            "psName": info.ps_name,
            "version": f"Version {info.version}",
            "manufacturer": "ganime",
            "description": info.description or "Generated with ganime",
        }
    )
    fb.setupOS2(
        sTypoAscender=ascender,
        sTypoDescender=descender,
        sTypoLineGap=round(0.2 * upm),
        usWinAscent=max(ascender, round(y_max)),
        usWinDescent=max(-descender, -round(y_min)),
        sxHeight=height("x", 0.5 * ascender),
        sCapHeight=height("H", 0.7 * ascender),
        version=4,
        fsType=0,  # installable embedding: no restrictions
        achVendID="GNME",
        fsSelection=0x40 | 0x80,  # REGULAR, USE_TYPO_METRICS
        usWeightClass=400,
    )
    os2 = fb.font["OS/2"]
    os2.recalcUnicodeRanges(fb.font)
    if hasattr(os2, "recalcCodePageRanges"):
        os2.recalcCodePageRanges(fb.font)
    fb.setupPost(keepGlyphNames=not cff)
    fb.setupHead(unitsPerEm=upm, fontRevision=float(info.version) if _is_number(info.version) else 1.0)
    fb.font["head"].created = fb.font["head"].modified = 0x7C25B080  # 2000-01-01: reproducible bytes
    buf = io.BytesIO()
    fb.save(buf)
    if empty:
        log.warning("no ink for %s: their glyphs are empty", "".join(empty))
    return BuiltFont(buf.getvalue(), flavor, chars, empty, base)


def _lines(points: list[tuple[int, int]]) -> list[Segment]:
    return [Segment((), p) for p in points]


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True
