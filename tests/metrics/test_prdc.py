"""Precision/recall (k = 3) on synthetic feature clouds whose overlap is known, and the labelled fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ganime.metrics import compute
from ganime.metrics.features import FALLBACK_LABEL
from ganime.metrics.prdc import precision_recall

DIMS = 8


def cloud(n: int, centre: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.0, (n, DIMS)) + centre


@pytest.fixture(scope="module")
def real() -> np.ndarray:
    """Two well separated modes, A at 0 and B at 12, 1,000 points each."""
    return np.concatenate([cloud(1000, 0, 1), cloud(1000, 12, 2)])


@pytest.fixture(scope="module")
def baseline(real: np.ndarray) -> tuple[float, float]:
    """Precision and recall of a fresh sample of the same distribution (< 1: k-NN balls miss some points)."""
    return precision_recall(real, np.concatenate([cloud(1000, 0, 3), cloud(1000, 12, 4)]))


def test_same_distribution_scores_high_and_disjoint_scores_zero(real, baseline) -> None:
    assert min(baseline) > 0.8
    assert precision_recall(real, cloud(2000, -12, 5)) == (0.0, 0.0)


def test_dropping_a_mode_halves_recall_but_keeps_precision(real, baseline) -> None:
    precision, recall = precision_recall(real, cloud(2000, 0, 6))  # only mode A
    assert precision == pytest.approx(baseline[0], abs=0.04)
    assert recall == pytest.approx(baseline[1] / 2, abs=0.04)


def test_off_manifold_samples_lower_precision_in_proportion(real, baseline) -> None:
    # 3/4 of the fakes on mode A, 1/4 far from any real point; mode B is missed
    precision, recall = precision_recall(real, np.concatenate([cloud(1500, 0, 7), cloud(500, -12, 8)]))
    assert precision == pytest.approx(0.75 * baseline[0], abs=0.04)
    assert recall == pytest.approx(baseline[1] / 2, abs=0.04)


def test_too_few_samples_is_an_error() -> None:
    with pytest.raises(ValueError, match="more than k=3"):
        precision_recall(cloud(3, 0, 0), cloud(10, 0, 1))


def test_without_weights_pr_uses_the_labelled_fallback_and_reports_its_floor(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GANIME_CACHE", str(tmp_path))
    monkeypatch.delenv("GANIME_INCEPTION_WEIGHTS", raising=False)
    dark, bright = smooth_images(40, 0, (0, 128)), smooth_images(40, 1, (128, 256))
    other = compute("pr", dark, bright)
    assert other["pr_features"] == FALLBACK_LABEL
    assert other["precision"] == 0.0 and other["recall"] == 0.0
    # the floor: one half of the reals against the other, at the fakes' count (20 = half of 40)
    assert other["pr_n"] == 20 and other["precision_real"] > 0.5 and other["recall_real"] > 0.5


def smooth_images(n: int, seed: int, value_range: tuple[int, int]) -> np.ndarray:
    """Random 4x4 colour fields with values in `value_range`, blown up to 16 px (blocks of 4x4 pixels)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(*value_range, (n, 4, 4, 3))
    upsampled = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)
    return np.clip(upsampled, 0, 255).astype(np.uint8)


def shapes(n: int, seed: int, size: int = 32) -> np.ndarray:
    """Sprites: 3 random rectangles or ellipses of random colours on white."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.full((n, size, size, 3), 255, np.uint8)
    for image in out:
        for _ in range(3):
            colour = rng.integers(0, 256, 3)
            (cy, cx), (ry, rx) = rng.uniform(6, size - 6, 2), rng.uniform(3, 8, 2)
            if rng.random() < 0.5:
                mask = (np.abs(yy - cy) < ry) & (np.abs(xx - cx) < rx)
            else:
                mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
            image[mask] = colour
    return out


def blobs(images: np.ndarray, cells: int = 4) -> np.ndarray:
    """The same images as shapeless colour blobs: averaged over a cells x cells grid, blown up smoothly."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    x = F.interpolate(F.adaptive_avg_pool2d(x, cells), size=images.shape[1:3], mode="bicubic", align_corners=False)
    return x.clamp(0, 255).round().byte().permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module")
def sprites() -> np.ndarray:
    return shapes(400, 0)


def test_fallback_scores_new_sprites_near_the_real_vs_real_floor(sprites, monkeypatch) -> None:
    monkeypatch.delenv("GANIME_INCEPTION_WEIGHTS", raising=False)
    got = compute("pr", sprites, shapes(200, 1))
    assert min(got["precision_real"], got["recall_real"]) > 0.7
    assert got["precision"] > got["precision_real"] - 0.1 and got["recall"] > got["recall_real"] - 0.1


@pytest.mark.parametrize("cells", [4, 8])
def test_fallback_gives_blobs_low_precision(sprites, cells, monkeypatch) -> None:
    # The 16 px pixel-PCA features gave these blobs precision 1.0 and 0.96: near the mean of a diverse set,
    # a point is inside some real image's k-NN ball.
    monkeypatch.delenv("GANIME_INCEPTION_WEIGHTS", raising=False)
    got = compute("pr", sprites, blobs(shapes(200, 1), cells))
    assert got["precision"] < 0.2 and got["precision_real"] > 0.7


def test_fallback_gives_a_collapsed_generator_low_recall(sprites, monkeypatch) -> None:
    monkeypatch.delenv("GANIME_INCEPTION_WEIGHTS", raising=False)
    five = shapes(5, 2)[np.arange(200) % 5]  # 5 distinct sprites, drawn 40 times each
    got = compute("pr", sprites, five)
    assert got["recall"] < 0.05 and got["recall_real"] > 0.7
    assert got["precision"] > 0.5  # the five are realistic: collapse shows in recall, not precision
