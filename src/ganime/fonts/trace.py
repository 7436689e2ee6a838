"""Vectorise glyph bitmaps (dark ink on white) into outlines with potrace (Selinger 2003, pure-Python `potracer`).

A bitmap is upsampled (bicubic) before thresholding, so the traced curves follow the anti-aliased edge rather
than the pixel staircase. Contours come back in font-like coordinates: y up, the origin at the bitmap's
bottom-left corner, one unit = one source pixel. Orientation is fixed here from the nesting depth (outer
contours one way, holes the other), so the fonts fill correctly whatever potrace's convention.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ganime.errors import MissingDependencyError

Point = tuple[float, float]
INK_LEVEL = 0.5  # a pixel is ink when darker than half way between black and white


@dataclass(frozen=True)
class Segment:
    """A line to `end` (controls empty) or a cubic Bezier with two control points."""

    controls: tuple[Point, ...]
    end: Point


@dataclass(frozen=True)
class Contour:
    """A closed outline from `start` through `segments` back to `start`."""

    start: Point
    segments: tuple[Segment, ...]

    def polygon(self, steps: int = 8) -> np.ndarray:
        """(K, 2) points along the contour, each Bezier sampled at `steps` points."""
        pts = [self.start]
        cur = self.start
        for seg in self.segments:
            if seg.controls:
                p0, (p1, p2), p3 = np.array(cur), map(np.array, seg.controls), np.array(seg.end)
                for t in np.linspace(0, 1, steps + 1)[1:]:
                    s = 1 - t
                    pts.append(tuple(s**3 * p0 + 3 * s * s * t * p1 + 3 * s * t * t * p2 + t**3 * p3))
            else:
                pts.append(seg.end)
            cur = seg.end
        return np.asarray(pts, dtype=np.float64)

    def reversed(self) -> Contour:
        """The same outline traversed the other way."""
        nodes = [self.start] + [s.end for s in self.segments]
        segs = []
        for i in range(len(self.segments) - 1, -1, -1):
            seg = self.segments[i]
            segs.append(Segment(tuple(reversed(seg.controls)), nodes[i]))
        return Contour(self.segments[-1].end if self.segments else self.start, tuple(segs))

    def transformed(self, fn: Callable[[Point], Point]) -> Contour:
        """Every point mapped through `fn`."""
        return Contour(
            fn(self.start), tuple(Segment(tuple(fn(c) for c in s.controls), fn(s.end)) for s in self.segments)
        )


def signed_area(poly: np.ndarray) -> float:
    """Shoelace area: positive for counter-clockwise in y-up coordinates."""
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _inside(point: np.ndarray, poly: np.ndarray) -> bool:
    # even-odd ray casting
    x, y = point
    xs, ys = poly[:, 0], poly[:, 1]
    xj, yj = np.roll(xs, 1), np.roll(ys, 1)
    cross = (ys > y) != (yj > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xint = (xj - xs) * (y - ys) / (yj - ys) + xs
    return bool(np.count_nonzero(cross & (x < xint)) % 2)


def orient(contours: list[Contour], outer_ccw: bool) -> list[Contour]:
    """Outer contours (even nesting depth) counter-clockwise if `outer_ccw`, holes the other way."""
    polys = [c.polygon() for c in contours]
    out = []
    for i, (c, poly) in enumerate(zip(contours, polys)):
        probe = poly.mean(axis=0) if len(poly) < 3 else poly[0]
        # a vertex of a traced contour never lies on another contour, so one probe decides the nesting
        depth = sum(_inside(probe, other) for j, other in enumerate(polys) if j != i)
        want_ccw = outer_ccw if depth % 2 == 0 else not outer_ccw
        out.append(c if (signed_area(poly) > 0) == want_ccw else c.reversed())
    return out


def ink_mask(bitmap: np.ndarray, upscale: int = 1) -> np.ndarray:
    """Bool (H*upscale, W*upscale) ink mask of a uint8 (H, W) or (H, W, 1) bitmap, dark ink on white."""
    img = np.asarray(bitmap)
    if img.ndim == 3:
        img = img[..., 0] if img.shape[-1] == 1 else np.asarray(Image.fromarray(img[..., :3]).convert("L"))
    if upscale > 1:
        h, w = img.shape
        img = np.asarray(Image.fromarray(img.astype(np.uint8)).resize((w * upscale, h * upscale), Image.BICUBIC))
    return img < 255 * INK_LEVEL


def trace_bitmap(
    bitmap: np.ndarray, upscale: int = 4, min_area: float = 1.0, alphamax: float = 1.0, opttolerance: float = 0.2
) -> list[Contour]:
    """Outlines of the ink in `bitmap` (uint8, dark on white), in source pixels, y up, origin bottom-left.

    Args:
        upscale: trace at this many times the resolution (smoother curves).
        min_area: drop specks smaller than this many source pixels (potrace's turdsize).
        alphamax: potrace's corner threshold (0 = polygons, 1.33 = no corners).
    """
    try:
        import potrace
    except ImportError:
        raise MissingDependencyError("vectorising glyphs needs potracer: pip install 'ganime[fonts]'") from None
    mask = ink_mask(bitmap, upscale)
    h = mask.shape[0]
    if not mask.any():
        return []
    # potracer inverts what it is given: hand it "background" so that the ink is traced
    path = potrace.Bitmap(~mask).trace(
        turdsize=round(min_area * upscale * upscale), alphamax=alphamax, opticurve=True, opttolerance=opttolerance
    )

    def to_font(p) -> Point:
        # potracer works in array coordinates (x right, y = row, down): flip y and undo the upscale
        return (float(p.x) / upscale, (h - float(p.y)) / upscale)

    contours = []
    for curve in path.curves:
        segs = []
        for seg in curve.segments:
            if seg.is_corner:
                segs += [Segment((), to_font(seg.c)), Segment((), to_font(seg.end_point))]
            else:
                segs.append(Segment((to_font(seg.c1), to_font(seg.c2)), to_font(seg.end_point)))
        if segs:
            contours.append(Contour(to_font(curve.start_point), tuple(segs)))
    return contours
