"""The border metric (metrics/background.py): specks of colour on a white page are counted in generated images
and not in the reals, while a figure's own edge is not a speck."""

from __future__ import annotations

import numpy as np
import pytest

from ganime.metrics import compute
from ganime.metrics.background import border_stats


def faces_on_white(n: int, rng: np.random.Generator, size: int = 32, radius: float = 1 / 2.2) -> np.ndarray:
    """A coloured disc of random colour on a white page; radius 1/2.2 of the size reaches into the border band."""
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * radius) ** 2
    images = np.full((n, size, size, 3), 255, np.uint8)
    images[:, disc] = rng.integers(0, 200, (n, 1, 3), dtype=np.uint8)
    return images


def speckle(images: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """A single coloured pixel near `count` of each image's four corners, where the disc does not reach."""
    out, s = images.copy(), images.shape[1]
    corners = np.array([(1, 1), (1, s - 2), (s - 2, 1), (s - 2, s - 2)])
    for img in out:
        y, x = corners[rng.choice(4, count, replace=False)].T
        img[y, x] = rng.integers(0, 200, (count, 3), dtype=np.uint8)
    return out


def test_specks_on_the_page_are_counted_and_a_figures_own_edge_is_not():
    rng = np.random.default_rng(0)
    real = faces_on_white(200, rng)  # the discs reach into the band: their edges are there, and no specks
    clean = faces_on_white(100, rng)
    stats = border_stats(real)
    assert stats["specks"] == stats["specked"] == 0 and 0.5 < stats["white"] < 1
    out = compute("border", real, clean)
    assert out["border_white"] == pytest.approx(out["border_white_real"])
    assert out["border_specks"] == out["border_specks_real"] == out["border_specked"] == 0
    specked = compute("border", real, speckle(clean, 3, rng))
    assert specked["border_specked"] == 1 and specked["border_specks"] > 0 == specked["border_specks_real"]
    assert specked["border_white"] < out["border_white"]
    # smaller figures gain white: the white share alone would call them cleaner than the reals despite specks
    small = compute("border", real, speckle(faces_on_white(100, rng, radius=1 / 3.5), 3, rng))
    assert small["border_white"] > small["border_white_real"] and small["border_specked"] == 1


def test_an_off_white_a_person_sees_as_white_counts_and_a_light_grey_does_not():
    assert border_stats(np.full((2, 16, 16, 3), 240, np.uint8))["white"] == 1.0
    grey = border_stats(np.full((2, 16, 16, 3), 200, np.uint8))
    assert grey["white"] == 0.0 and grey["specks"] == 0  # a grey page is not specks, it is a grey page
