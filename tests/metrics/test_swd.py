"""SWD: zero for identical sets, grows with noise and colour change, stable across seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ganime.errors import DataError
from ganime.metrics.registry import split_halves
from ganime.metrics.swd import (
    _pyr_down,
    _pyr_up,
    level_descriptors,
    pyramid_resolutions,
    sliced_wasserstein,
    sliced_wasserstein_1d,
)


def smooth_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Smooth random colour fields with one sharp random rectangle each: structure at every scale."""
    rng = np.random.default_rng(seed)
    field = torch.from_numpy(rng.uniform(0, 255, (n, 3, 4, 4)).astype(np.float32))
    images = F.interpolate(field, size=(size, size), mode="bilinear", align_corners=False).numpy()
    corners = rng.integers(0, size, (n, 2, 2))
    colours = rng.uniform(0, 255, (n, 3))
    for i in range(n):
        (y0, y1), (x0, x1) = np.sort(corners[i], axis=1)
        images[i, :, y0 : y1 + 1, x0 : x1 + 1] = colours[i, :, None, None]
    return images.transpose(0, 2, 3, 1).round().astype(np.uint8)


def add_noise(images: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, images.shape)
    return np.clip(images + noise, 0, 255).round().astype(np.uint8)


def rotate_hue(images: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate colours about the grey axis (a per-channel gain/offset would be normalised away by SWD)."""
    axis = np.ones(3) / np.sqrt(3)
    t = np.radians(degrees)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.cos(t) * np.eye(3) + np.sin(t) * cross + (1 - np.cos(t)) * np.outer(axis, axis)
    out = (images.astype(np.float64) - 127.5) @ rot.T + 127.5
    return np.clip(out, 0, 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def real() -> np.ndarray:
    return smooth_images(512)


def test_identical_sets_are_near_zero(real: np.ndarray) -> None:
    same = sliced_wasserstein(real, real)["swd"]
    noisy = sliced_wasserstein(real, add_noise(real, 8))["swd"]
    assert same < 0.2 * noisy


def test_same_distribution_with_different_counts_is_small(real: np.ndarray) -> None:
    other = smooth_images(200, seed=5)
    same_dist = sliced_wasserstein(real, other)["swd"]
    noisy = sliced_wasserstein(real, add_noise(other, 8))["swd"]
    assert same_dist < 0.5 * noisy


def test_more_noise_gives_larger_swd(real: np.ndarray) -> None:
    values = [sliced_wasserstein(real, add_noise(real, sigma))["swd"] for sigma in (4, 16, 48)]
    assert values[0] < values[1] < values[2]


def test_stronger_colour_change_gives_larger_swd(real: np.ndarray) -> None:
    values = [sliced_wasserstein(real, rotate_hue(real, deg))["swd"] for deg in (10, 25, 50)]
    assert values[0] < values[1] < values[2]


def test_spread_across_seeds_is_small(real: np.ndarray) -> None:
    fake = add_noise(real, 16)
    values = np.array([sliced_wasserstein(real, fake, seed=s)["swd"] for s in range(3)])
    assert values.std() < 0.05 * values.mean()


def test_levels_follow_resolution() -> None:
    assert pyramid_resolutions(64) == [64, 32, 16]
    assert pyramid_resolutions(32) == [32, 16]
    images = smooth_images(8, size=64)
    result = sliced_wasserstein(images, add_noise(images, 8))
    assert set(result) == {"swd_64", "swd_32", "swd_16", "swd"}
    assert result["swd"] == pytest.approx(np.mean([result[k] for k in ("swd_64", "swd_32", "swd_16")]))


def test_pyramid_matches_scipy_mirror_convolution() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    k = np.array([1, 4, 6, 4, 1], np.float32) / 16
    kernel = np.outer(k, k)[None, None]
    for side in (16, 13, 6):  # even and odd sides; the kernels treat borders and interior apart
        x = np.random.default_rng(side).uniform(0, 255, (2, 1, side, side)).astype(np.float32)
        down = ndimage.convolve(x, kernel, mode="mirror")[:, :, ::2, ::2]  # ProGAN pyr_down
        np.testing.assert_allclose(_pyr_down(x[:, 0]), down[:, 0], rtol=1e-5, atol=1e-3)
        for size in (2 * side, 2 * side - 1):  # even and odd targets take different mirror borders
            up_in = np.zeros((2, 1, size, size), np.float32)
            up_in[:, :, ::2, ::2] = x
            up = ndimage.convolve(up_in, kernel * 4, mode="mirror")  # ProGAN pyr_up
            np.testing.assert_allclose(_pyr_up(x[:, 0], size, size), up[:, 0], rtol=1e-5, atol=1e-3)


def test_too_small_or_mismatched_images_are_rejected() -> None:
    with pytest.raises(DataError, match="at least 16 px"):
        sliced_wasserstein(smooth_images(4, size=8), smooth_images(4, size=8))
    with pytest.raises(DataError, match="differ in size"):
        sliced_wasserstein(smooth_images(4, size=32), smooth_images(4, size=16))
    with pytest.raises(DataError, match="uint8"):
        sliced_wasserstein(smooth_images(4).astype(np.float32), smooth_images(4))


def test_repeated_patches_count_as_often_as_drawn() -> None:
    """At 16 px the 128 patches of an image come from 100 centres: each distinct patch is one row, weighted by how
    often it was drawn, and the distance is that of all the draws written out."""
    images = add_noise(smooth_images(40, size=16), 6)  # noise: patches at two places differ
    n = 128 * len(images)
    rows, weights = level_descriptors(images, 0, 1, n, np.random.default_rng(7), out=np.empty((n, 147), np.float32))
    assert weights.total() == n
    assert 0.5 < len(rows) / n < 0.65  # E[distinct of 128 draws from 100] = 72.4
    assert len(np.unique(rows, axis=0)) == len(rows)  # no patch twice
    written_counts = np.concatenate([np.ones(weights.ones), weights.rest])[:, None]
    per_channel = [(written_counts * rows**k).sum(0).reshape(3, 49).sum(1) / (49 * n) for k in (1, 2)]
    np.testing.assert_allclose(per_channel[0], 0, atol=1e-4)  # normalised over all draws: mean 0, std 1
    np.testing.assert_allclose(per_channel[1], 1, rtol=1e-4)
    other, other_weights = level_descriptors(add_noise(images, 12), 0, 1, n, np.random.default_rng(8))
    written_out = [
        np.concatenate([r[: w.ones], np.repeat(r[w.ones :], w.rest, axis=0)])
        for r, w in ((rows, weights), (other, other_weights))
    ]
    weighted = sliced_wasserstein_1d(rows, other, np.random.default_rng(1), 2, None, weights, other_weights)
    assert weighted == pytest.approx(sliced_wasserstein_1d(*written_out, np.random.default_rng(1), 2), rel=1e-6)
    assert weighted > 0.01


def test_the_swd_metric_reports_its_own_real_vs_real_floor(real: np.ndarray) -> None:
    from ganime.eval_report import real_subsets
    from ganime.metrics import compute

    pool = smooth_images(300, seed=3)
    scored, other = real_subsets(pool, 100, seed=0)
    assert other is not None and len(other) == 100
    fake = add_noise(scored, 40.0)
    # with other reals: the floor is the same distance between the scored reals and those, at the same count
    out = compute("swd", scored, fake, real_other=other)
    assert out["swd_real"] == pytest.approx(sliced_wasserstein(scored, other)["swd"])
    assert out["swd_real_n"] == 100 and out["swd_real"] < out["swd"]  # noisy fakes sit above the floor
    # without them: two halves of the scored reals, at half the count (and it says so), and the fakes at that
    # count against the same reference half, so that generator and floor are read at equal sizes
    out = compute("swd", scored, fake)
    assert out["swd_real_n"] == 50 and 0 < out["swd_real"] < out["swd"]
    h = split_halves(100, 100, seed=0)
    assert out["swd"] == pytest.approx(sliced_wasserstein(scored[h.reference], fake[h.fake])["swd"])
    assert out["swd_real"] == pytest.approx(sliced_wasserstein(scored[h.reference], scored[h.real])["swd"])
    # the subset real_subsets scores with is the one real_subset always picked, and the other one is disjoint
    flat = {a.tobytes() for a in scored}
    assert not flat & {a.tobytes() for a in other}
    assert real_subsets(pool, 300)[1] is None  # too few for a disjoint set of the same size
