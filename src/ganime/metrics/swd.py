"""Sliced Wasserstein distance on Laplacian-pyramid patches, following ProGAN (Karras et al. 2018)."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from ganime.errors import DataError
from ganime.metrics.features import check_pair
from ganime.metrics.registry import MetricContext, MetricResult, register_metric

log = logging.getLogger(__name__)

PATCH_SIZE = 7  # 7x7x3 neighbourhoods -> 147-d descriptors
PATCHES_PER_IMAGE = 128
DIR_REPEATS = 4
DIRS_PER_REPEAT = 128
MIN_RESOLUTION = 16  # the pyramid stops at 16 px, as in ProGAN
_BINOMIAL = np.float32([1, 4, 6]) / 16  # taps [1, 4, 6, 4, 1] / 16; outer product = ProGAN's gaussian_filter


def pyramid_resolutions(size: int) -> list[int]:
    """Pyramid level sizes from `size` down to the last one >= 16 px, e.g. 64 -> [64, 32, 16]."""
    levels = []
    while size >= MIN_RESOLUTION:
        levels.append(size)
        size //= 2
    return levels


def _blur(x: np.ndarray, stride: int = 1) -> np.ndarray:
    """Separable 5x5 binomial filter of (B, H, W) float32 with mirror borders, keeping every `stride`-th pixel.

    numpy 'reflect' padding is scipy.ndimage's 'mirror' mode used by ProGAN; shifted-slice sums beat conv2d
    for a single-channel 5-tap kernel several times over on CPU.
    """
    h, w = x.shape[-2:]
    p = np.pad(x, ((0, 0), (2, 2), (2, 2)), mode="reflect")
    rows = (p[:, :, 0:w:stride] + p[:, :, 4 : w + 4 : stride]) * _BINOMIAL[0]
    rows += (p[:, :, 1 : w + 1 : stride] + p[:, :, 3 : w + 3 : stride]) * _BINOMIAL[1]
    rows += p[:, :, 2 : w + 2 : stride] * _BINOMIAL[2]
    out = (rows[:, 0:h:stride] + rows[:, 4 : h + 4 : stride]) * _BINOMIAL[0]
    out += (rows[:, 1 : h + 1 : stride] + rows[:, 3 : h + 3 : stride]) * _BINOMIAL[1]
    out += rows[:, 2 : h + 2 : stride] * _BINOMIAL[2]
    return out


def _pyr_down(x: np.ndarray) -> np.ndarray:
    """Blur and keep even pixels (cv2.pyrDown / ProGAN pyr_down)."""
    return _blur(x, stride=2)


def _upsample_axis(x: np.ndarray, length: int, axis: int) -> np.ndarray:
    """Zero-insert along `axis` to `length`, then mirror-border 5-tap binomial filter x 2, done polyphase.

    Even outputs get (x[k-1] + 6 x[k] + x[k+1]) / 8, odd ones (x[k] + x[k+1]) / 2; the padding below is what
    reflecting the zero-inserted signal amounts to (x[-1] = x[1]; x[n] = x[n-1] if length is even, else x[n-2]).
    """
    x = np.moveaxis(x, axis, -1)
    n = x.shape[-1]
    right = x[..., n - 1 : n] if length % 2 == 0 else x[..., n - 2 : n - 1]
    xp = np.concatenate([x[..., 1:2], x, right], axis=-1)  # xp[j] = x[j - 1]
    out = np.empty((*x.shape[:-1], 2 * n), np.float32)
    even = out[..., 0::2]
    np.add(xp[..., 0:n], xp[..., 2 : n + 2], out=even)
    even *= np.float32(1 / 8)
    even += xp[..., 1 : n + 1] * np.float32(6 / 8)
    odd = out[..., 1::2]
    np.add(xp[..., 1 : n + 1], xp[..., 2 : n + 2], out=odd)
    odd *= np.float32(0.5)
    return np.moveaxis(out[..., :length], -1, axis)


def _pyr_up(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """Zero-insert to (height, width) and blur with 4x the kernel (cv2.pyrUp / ProGAN pyr_up)."""
    return _upsample_axis(_upsample_axis(x, width, axis=-1), height, axis=-2)


def laplacian_level(images: np.ndarray, level: int, num_levels: int) -> np.ndarray:
    """One level of the Laplacian pyramid of (B, H, W, 3) uint8 images as (B, 3, h, w) float32.

    The last level is the low-pass residual, as in ProGAN's generate_laplacian_pyramid.
    """
    b, h, w, c = images.shape
    x = images.transpose(0, 3, 1, 2).reshape(b * c, h, w).astype(np.float32)  # filter every channel alike
    for _ in range(level):
        x = _pyr_down(x)
    if level < num_levels - 1:
        x -= _pyr_up(_pyr_down(x), x.shape[-2], x.shape[-1])
    return x.reshape(b, c, x.shape[-2], x.shape[-1])


def _patch_owners(n_images: int, n_patches: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted image index of each patch: patches spread as evenly as possible over all images."""
    counts = np.full(n_images, n_patches // n_images)
    counts[rng.choice(n_images, n_patches % n_images, replace=False)] += 1
    return np.repeat(np.arange(n_images), counts)


def _level_size(size: int, level: int) -> int:
    """Side of pyramid level `level` (each pyr_down keeps ceil(size / 2) pixels)."""
    for _ in range(level):
        size = -(-size // 2)
    return size


def level_descriptors(
    images: np.ndarray,
    level: int,
    num_levels: int,
    n_patches: int,
    rng: np.random.Generator,
    workers: int = 1,
    batch_size: int = 256,
) -> np.ndarray:
    """(147, n_patches) float32 random 7x7x3 patches of one pyramid level, normalised per channel.

    Component-major layout, so that projections come out as contiguous rows to sort. Image batches run in
    `workers` threads (numpy releases the GIL); all random draws happen up front, so results do not depend on it.
    """
    half = PATCH_SIZE // 2
    h, w = _level_size(images.shape[1], level), _level_size(images.shape[2], level)
    owners = _patch_owners(len(images), n_patches, rng)
    # Patch centres at least 3 px from every border (ProGAN: randint(3, size - 3)); stored as corners.
    ys = rng.integers(half, h - half, size=n_patches) - half
    xs = rng.integers(half, w - half, size=n_patches) - half
    bounds = np.searchsorted(owners, np.arange(0, len(images) + batch_size, batch_size))
    out = np.empty((3 * PATCH_SIZE * PATCH_SIZE, n_patches), np.float32)
    channels = out.reshape(3, PATCH_SIZE * PATCH_SIZE, n_patches)

    def extract(batch: int) -> np.ndarray:
        start, lo, hi = batch * batch_size, bounds[batch], bounds[batch + 1]
        band = laplacian_level(images[start : start + batch_size], level, num_levels)
        windows = sliding_window_view(band, (PATCH_SIZE, PATCH_SIZE), axis=(2, 3))  # (B, 3, h-6, w-6, 7, 7)
        patches = windows[owners[lo:hi] - start, :, ys[lo:hi], xs[lo:hi]]  # (P, 3, 7, 7)
        out[:, lo:hi] = patches.reshape(hi - lo, -1).T
        part = out[:, lo:hi]  # rows are contiguous; float32 dot products per row are accurate enough here
        sums = part.sum(axis=1, dtype=np.float64)
        squares = np.array([np.vdot(row, row) for row in part], np.float64)
        return np.stack([sums, squares]).reshape(2, 3, -1).sum(axis=2)

    with ThreadPoolExecutor(workers) as pool:
        sums = sum(pool.map(extract, range(len(bounds) - 1)))
    # ProGAN finalize_descriptors: per-channel mean/std over all patches (and pixels) of this set and level.
    count = PATCH_SIZE * PATCH_SIZE * n_patches
    mean = sums[0] / count
    std = np.sqrt(np.maximum(sums[1] / count - mean**2, 0.0))
    scale = 1.0 / np.maximum(std, 1e-8)

    def normalise(cols: slice) -> None:
        for c in range(3):
            channels[c, :, cols] -= np.float32(mean[c])
            channels[c, :, cols] *= np.float32(scale[c])

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(normalise, _split(n_patches, workers)))
    return out


def _split(n: int, parts: int) -> list[slice]:
    """`parts` contiguous slices covering range(n)."""
    step = -(-n // max(parts, 1))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


def sliced_wasserstein_1d(
    desc_a: np.ndarray, desc_b: np.ndarray, rng: np.random.Generator, workers: int = 1
) -> float:
    """Mean 1-D Wasserstein distance of two (D, N) descriptor sets over 4 x 128 random unit directions.

    Sorts the projections in place, in `workers` threads (np.sort releases the GIL).
    """
    if desc_a.shape != desc_b.shape:
        raise ValueError(f"descriptor sets differ in shape: {desc_a.shape} vs {desc_b.shape}")

    def sorted_gap(proj_a: np.ndarray, proj_b: np.ndarray) -> float:
        # W1 of two equal-size 1-D samples = mean |sorted a - sorted b|.
        proj_a.sort(axis=1)
        proj_b.sort(axis=1)
        return sum(float(np.abs(a - b).sum(dtype=np.float64)) for a, b in zip(proj_a, proj_b))

    total = 0.0
    with ThreadPoolExecutor(workers) as pool:
        for _ in range(DIR_REPEATS):
            dirs = rng.standard_normal((DIRS_PER_REPEAT, desc_a.shape[0]))
            dirs = (dirs / np.linalg.norm(dirs, axis=1, keepdims=True)).astype(np.float32)
            proj_a, proj_b = dirs @ desc_a, dirs @ desc_b  # (directions, N): one contiguous row per direction
            rows = _split(DIRS_PER_REPEAT, workers)
            total += sum(pool.map(sorted_gap, [proj_a[r] for r in rows], [proj_b[r] for r in rows]))
    return total / (DIR_REPEATS * DIRS_PER_REPEAT * desc_a.shape[1])


def sliced_wasserstein(
    real: np.ndarray, fake: np.ndarray, seed: int = 0, workers: int | None = None
) -> dict[str, float]:
    """SWD x 1e3 per pyramid level (`swd_64`, `swd_32`, `swd_16`, ...) and their average `swd`.

    Both sets contribute 128 x min(len(real), len(fake)) patches per level; the larger set's patches are
    spread over all its images. `workers` threads (default: torch.get_num_threads()) share the work.
    """
    check_pair(real, fake)
    resolutions = pyramid_resolutions(min(real.shape[1:3]))
    if not resolutions:
        raise DataError(f"SWD needs images of at least {MIN_RESOLUTION} px, got {real.shape[1:3]}")
    workers = workers or max(1, torch.get_num_threads())
    n_patches = PATCHES_PER_IMAGE * min(len(real), len(fake))
    result = {}
    for level, res in enumerate(resolutions):
        # One random stream per (level, role): a level's value does not depend on the other levels.
        desc_real, desc_fake = (
            level_descriptors(
                images,
                level,
                len(resolutions),
                n_patches,
                np.random.default_rng((seed, level, role)),
                workers,
            )
            for role, images in enumerate((real, fake))
        )
        dist = sliced_wasserstein_1d(desc_real, desc_fake, np.random.default_rng((seed, level, 2)), workers)
        result[f"swd_{res}"] = dist * 1e3  # ProGAN reports SWD x 10^3
        del desc_real, desc_fake
    result["swd"] = float(np.mean(list(result.values())))
    return result


@register_metric("swd")
def _swd_metric(ctx: MetricContext) -> MetricResult:
    """Sliced Wasserstein distance (weights-free)."""
    return dict(sliced_wasserstein(ctx.real, ctx.fake, seed=ctx.seed))
