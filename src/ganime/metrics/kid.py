"""Kernel Inception distance (Binkowski et al. 2018): unbiased MMD^2 with a cubic polynomial kernel."""

from __future__ import annotations

import logging

import numpy as np

from ganime.metrics.registry import MetricContext, MetricResult, register_metric

log = logging.getLogger(__name__)


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3 for all row pairs, in float64."""
    return (np.asarray(x @ y.T, np.float64) / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """MMD^2 estimate of torch-fidelity's 'unbiased' mode (within-set diagonals dropped, cross-set kept)."""
    m = len(x)
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.sum() / (m * m))


def kid(
    feats_real: np.ndarray, feats_fake: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Mean and std of MMD^2 over random equal-size subsets (as torch-fidelity / StyleGAN2-ADA)."""
    m = min(subset_size, len(feats_real), len(feats_fake))
    if m < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    if m < subset_size:
        log.warning(
            "KID subset size reduced from %d to %d (set sizes %d, %d)",
            subset_size,
            m,
            len(feats_real),
            len(feats_fake),
        )
    rng = np.random.default_rng(seed)
    mmds = np.empty(subsets)
    for i in range(subsets):
        x = feats_fake[rng.choice(len(feats_fake), m, replace=False)]
        y = feats_real[rng.choice(len(feats_real), m, replace=False)]
        mmds[i] = mmd2_unbiased(x, y)
    return float(mmds.mean()), float(mmds.std())


@register_metric("kid")
def _kid_metric(ctx: MetricContext) -> MetricResult:
    """KID on Inception pool3 features (needs the Inception weights)."""
    real, fake = ctx.inception()
    mean, std = kid(real.features, fake.features, seed=ctx.seed)
    return {"kid": mean, "kid_std": std}
