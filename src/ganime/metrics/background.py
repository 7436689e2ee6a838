"""Background cleanliness (`border`): specks of colour on the white page around the figure, generated vs real.

Sets drawn on a flat white page (the faces, emoji, glyphs) show a generator's leftover noise first there: marks
scattered over the white around a face. The band is the outer eighth of the image on every side. A pixel is
near-white when each channel is within WHITE_TOLERANCE of 255, and a speck when it is not near-white and at most
SPECK_FILL of the pixels in the window around it (about a sixteenth of the image wide) are not near-white either:
a mark standing alone, not the edge of a face or a strand of hair joined to it.

Three numbers, each with its real twin measured on the same count of reals (half B of the seeded halves every
floor uses):
- `border_white`: the near-white share of the band. It is what a glance at the page reads, but a generator that
  draws its figures a little smaller gains white, so it can hide specks;
- `border_specks`: the share of band pixels that are specks (x 1000, per mille);
- `border_specked`: the share of images with at least one speck in the band.
"""

from __future__ import annotations

import numpy as np

from ganime.metrics.registry import MetricContext, MetricResult, register_metric

BAND = 8  # the band is size // BAND pixels wide on each side
WHITE_TOLERANCE = 24  # near-white: every channel >= 255 - this
SPECK_FILL = 0.15  # a non-white pixel is a speck when at most this share of its window is non-white
BATCH = 256  # images measured at a time (the window sums hold four int32 copies of a batch)


def border_mask(size: int, band: int = BAND) -> np.ndarray:
    """(size, size) bool: True on the outer size // band pixels of every side."""
    width = max(1, size // band)
    mask = np.ones((size, size), bool)
    mask[width:-width, width:-width] = False
    return mask


def window_size(size: int) -> int:
    """The odd side of the window that decides whether a pixel stands alone: about size / 16 (9 at 128 px)."""
    return max(3, size // 16 | 1)


def _window_sums(a: np.ndarray, k: int) -> np.ndarray:
    """For bool (N, H, W) `a`: the count of True in the k x k window centred on each pixel (zeros outside)."""
    c = np.pad(a.astype(np.int32), ((0, 0), (k // 2 + 1, k // 2), (k // 2 + 1, k // 2))).cumsum(1).cumsum(2)
    return c[:, k:, k:] - c[:, :-k, k:] - c[:, k:, :-k] + c[:, :-k, :-k]


def border_stats(images: np.ndarray, tolerance: int = WHITE_TOLERANCE) -> dict[str, float]:
    """{"white", "specks", "specked"} of uint8 (N, S, S, C) `images` (see the module docstring)."""
    if images.ndim != 4 or images.shape[1] != images.shape[2] or images.dtype != np.uint8 or not len(images):
        raise ValueError(f"need uint8 (N, S, S, C) images, got {images.dtype} {images.shape}")
    size = images.shape[1]
    mask, k = border_mask(size), window_size(size)
    white = specks = specked = 0
    for start in range(0, len(images), BATCH):
        other = images[start : start + BATCH].min(axis=-1) < 255 - tolerance  # (n, S, S): not near-white
        speck = other & (_window_sums(other, k) <= SPECK_FILL * k * k)
        white += int((~other[:, mask]).sum())
        per_image = speck[:, mask].sum(axis=1)
        specks += int(per_image.sum())
        specked += int((per_image > 0).sum())
    pixels = len(images) * int(mask.sum())
    return {"white": white / pixels, "specks": 1000 * specks / pixels, "specked": specked / len(images)}


@register_metric("border")
def _border_metric(ctx: MetricContext) -> MetricResult:
    """The generated images' border_white, border_specks and border_specked, with the reals' as `_real` twins."""
    halves = ctx.halves()
    fake, real = border_stats(ctx.fake[halves.fake]), border_stats(ctx.real[halves.real])
    return {f"border_{k}": v for k, v in fake.items()} | {f"border_{k}_real": v for k, v in real.items()}
