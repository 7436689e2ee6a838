"""Precision/recall (k = 3) on synthetic feature clouds whose overlap is known, and the labelled fallback."""

from __future__ import annotations

import numpy as np
import pytest

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


def test_without_weights_pr_uses_the_labelled_pixel_fallback(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GANIME_CACHE", str(tmp_path))
    monkeypatch.delenv("GANIME_INCEPTION_WEIGHTS", raising=False)
    dark, bright = smooth_images(40, 0, (0, 128)), smooth_images(40, 1, (128, 256))
    same = compute("pr", dark, dark)
    assert same["pr_features"] == FALLBACK_LABEL
    assert same["precision"] == 1.0 and same["recall"] == 1.0  # every point lies in its own ball
    other = compute("pr", dark, bright)
    assert other["precision"] == 0.0 and other["recall"] == 0.0


def smooth_images(n: int, seed: int, value_range: tuple[int, int]) -> np.ndarray:
    """Random 4x4 colour fields with values in `value_range`, blown up to 16 px (blocks of 4x4 pixels)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(*value_range, (n, 4, 4, 3))
    upsampled = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)
    return np.clip(upsampled, 0, 255).astype(np.uint8)
