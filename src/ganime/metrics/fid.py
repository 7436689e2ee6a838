"""Fréchet Inception distance (Heusel et al. 2017) from feature means and covariances."""

from __future__ import annotations

import logging

import numpy as np

from ganime.metrics.registry import MetricContext, MetricResult, register_metric

log = logging.getLogger(__name__)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative rounding-noise eigenvalues clipped)."""
    eigvals, eigvecs = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))) @ eigvecs.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)) between two Gaussians.

    tr (sigma1 sigma2)^(1/2) = tr (s sigma2 s)^(1/2) with s = sigma1^(1/2): the inner matrix is symmetric PSD,
    so its eigenvalues give the trace exactly, with no complex parts or scipy.linalg.sqrtm retries.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = (
        np.atleast_2d(np.asarray(sigma1, np.float64)),
        np.atleast_2d(np.asarray(sigma2, np.float64)),
    )
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"mismatched statistics: mu {mu1.shape}/{mu2.shape}, sigma {sigma1.shape}/{sigma2.shape}"
        )
    root1 = _psd_sqrt(sigma1)
    inner = root1 @ sigma2 @ root1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0.0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def frechet_distance_features(feats1: np.ndarray, feats2: np.ndarray) -> float:
    """FID between the Gaussians fitted to two (N, D) feature sets (unbiased covariances, as pytorch-fid).

    With fewer samples than dimensions (e.g. 1,024 images, 2048-d Inception features) the covariances are
    low-rank, and tr (sigma1 sigma2)^(1/2) equals the nuclear norm of A B^T, A and B the centred features
    scaled by 1/sqrt(N - 1): the non-zero eigenvalues of A^T A B^T B are those of (A B^T)(A B^T)^T. That is an
    N1 x N2 SVD instead of D x D eigen-decompositions; the answer is the same.
    """
    n1, n2, dims = len(feats1), len(feats2), feats1.shape[1]
    if min(n1, n2) < 2:
        raise ValueError("FID needs at least 2 samples in each set")
    f1, f2 = np.asarray(feats1, np.float64), np.asarray(feats2, np.float64)
    mu1, mu2 = f1.mean(axis=0), f2.mean(axis=0)
    if min(n1, n2) >= dims:
        return frechet_distance(mu1, np.cov(f1, rowvar=False), mu2, np.cov(f2, rowvar=False))
    a = (f1 - mu1) / np.sqrt(n1 - 1)
    b = (f2 - mu2) / np.sqrt(n2 - 1)
    tr_covmean = np.linalg.svd(a @ b.T, compute_uv=False).sum()
    diff = mu1 - mu2
    return float(diff @ diff + (a * a).sum() + (b * b).sum() - 2.0 * tr_covmean)


@register_metric("fid")
def _fid_metric(ctx: MetricContext) -> MetricResult:
    """FID on Inception pool3 features (needs the Inception weights)."""
    real, fake = ctx.inception()
    if min(len(real.features), len(fake.features)) < real.features.shape[1]:
        return {"fid": frechet_distance_features(real.features, fake.features)}
    return {"fid": frechet_distance(real.mu, real.sigma, fake.mu, fake.sigma)}
