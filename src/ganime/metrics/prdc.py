"""Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN balls in a feature space."""

from __future__ import annotations

import logging

import numpy as np
import torch

from ganime.errors import DataError
from ganime.metrics.features import FALLBACK_LABEL, INCEPTION_LABEL, fallback_features
from ganime.metrics.registry import MetricContext, MetricResult, register_metric

log = logging.getLogger(__name__)

NEIGHBOURHOOD = 3  # k of the k-NN balls, as in the paper and StyleGAN2-ADA


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(len(a), len(b)) squared Euclidean distances via |a|^2 + |b|^2 - 2 a.b, clamped at 0."""
    dist = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return dist.clamp_min_(0.0)


def knn_radii(feats: torch.Tensor, k: int = NEIGHBOURHOOD, batch_size: int = 1024) -> torch.Tensor:
    """Squared distance from each row to its k-th nearest other row."""
    radii = [
        squared_distances(feats[start : start + batch_size], feats).kthvalue(k + 1, dim=1).values  # +1: self
        for start in range(0, len(feats), batch_size)
    ]
    return torch.cat(radii)


def in_manifold(
    probes: torch.Tensor, manifold: torch.Tensor, radii: torch.Tensor, batch_size: int = 1024
) -> torch.Tensor:
    """Whether each probe lies inside at least one manifold point's k-NN ball."""
    inside = [
        (squared_distances(probes[start : start + batch_size], manifold) <= radii[None, :]).any(dim=1)
        for start in range(0, len(probes), batch_size)
    ]
    return torch.cat(inside)


def precision_recall(
    feats_real: np.ndarray, feats_fake: np.ndarray, k: int = NEIGHBOURHOOD, batch_size: int = 1024
) -> tuple[float, float]:
    """Precision (fake inside the real manifold) and recall (real inside the fake manifold).

    Distances are computed `batch_size` rows at a time, so 10k x 10k needs only ~40 MB per block.
    """
    if min(len(feats_real), len(feats_fake)) <= k:
        raise ValueError(f"precision/recall needs more than k={k} samples in each set")
    centre = feats_real.mean(axis=0)  # centring keeps the float32 expansion accurate
    real = torch.from_numpy(np.ascontiguousarray(feats_real - centre, np.float32))
    fake = torch.from_numpy(np.ascontiguousarray(feats_fake - centre, np.float32))
    with torch.inference_mode():
        precision = in_manifold(fake, real, knn_radii(real, k, batch_size), batch_size).float().mean()
        recall = in_manifold(real, fake, knn_radii(fake, k, batch_size), batch_size).float().mean()
    return float(precision), float(recall)


@register_metric("pr")
def _pr_metric(ctx: MetricContext) -> MetricResult:
    """Precision/recall of the fakes and of held-back reals (the floor), both against one half of the reals.

    On Inception features if the weights are found, else on the labelled weights-free fallback.
    """
    halves = ctx.halves()
    if min(len(halves.reference), len(halves.fake)) <= NEIGHBOURHOOD:
        raise DataError(
            f"precision/recall needs at least {2 * NEIGHBOURHOOD + 2} real and {NEIGHBOURHOOD + 1} generated images"
        )
    if ctx.has_inception_weights():
        real, fake = ctx.inception()
        feats_real, feats_fake, label = real.features, fake.features, INCEPTION_LABEL
    else:
        log.warning(
            "no Inception weights: precision/recall on %s features (not comparable to papers)", FALLBACK_LABEL
        )
        feats_real, feats_fake = fallback_features(ctx.real, ctx.fake)
        label = FALLBACK_LABEL
    reference = feats_real[halves.reference]
    precision, recall = precision_recall(reference, feats_fake[halves.fake])
    precision_real, recall_real = precision_recall(reference, feats_real[halves.real])
    return {
        "precision": precision,
        "recall": recall,
        "precision_real": precision_real,
        "recall_real": recall_real,
        "pr_n": float(len(halves.fake)),
        "pr_features": label,
    }
