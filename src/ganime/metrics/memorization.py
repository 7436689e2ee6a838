"""Memorization check: how close each generated image is to its nearest training image, relative to the
spacing of the training set itself."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganime.errors import DataError
from ganime.metrics.features import check_pair, downsample
from ganime.metrics.prdc import squared_distances
from ganime.metrics.registry import MetricContext, MetricResult, register_metric

log = logging.getLogger(__name__)

NN_SIZE = 32  # images are compared as 32x32 area-downsampled pixels
NN_LABEL = f"pixels{NN_SIZE}"
# ratio = d(fake, x) / d(x, nearest other training image), x = the fake's nearest training image.
# Below 1/3, the triangle inequality gives d(fake, x') >= d(x, x') - d(fake, x) > 2 d(fake, x) for every other
# training image x': the fake is unambiguously a (near-)copy of x. Novel samples sit around ratio ~1.
COPY_THRESHOLD = 1.0 / 3.0
SHEET_PAIRS = 16


@dataclass(frozen=True)
class NearestReal:
    """Each fake's nearest training image and the distance ratio used to flag copies."""

    real_index: np.ndarray  # (M,) index into the training set
    fake_distance: np.ndarray  # (M,) d(fake, nearest real)
    real_distance: np.ndarray  # (M,) d(that real, its nearest other real)
    ratio: np.ndarray  # (M,) fake_distance / real_distance (0 for a copy of a duplicated image)


def _nearest(
    query: torch.Tensor, ref: torch.Tensor, self_index: torch.Tensor | None = None, batch_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distance and index of each query row's nearest ref row (skipping ref[self_index[i]])."""
    dists, indices = [], []
    for start in range(0, len(query), batch_size):
        d = squared_distances(query[start : start + batch_size], ref)
        if self_index is not None:
            d[torch.arange(len(d)), self_index[start : start + batch_size]] = float("inf")
        best = d.min(dim=1)
        dists.append(best.values)
        indices.append(best.indices)
    return torch.cat(dists), torch.cat(indices)


def nearest_real(real: np.ndarray, fake: np.ndarray, size: int = NN_SIZE) -> NearestReal:
    """Nearest training image of every fake in downsampled pixel space, with the copy ratio."""
    real_px = downsample(real, size)
    centre = real_px.mean(axis=0)  # centring keeps the float32 expansion accurate
    real_t = torch.from_numpy(real_px - centre)
    fake_t = torch.from_numpy(downsample(fake, size) - centre)
    with torch.inference_mode():
        _, idx = _nearest(fake_t, real_t)
        # Only the training images that are some fake's nearest neighbour need their own spacing.
        used, inverse = torch.unique(idx, return_inverse=True)
        _, used_nn = _nearest(real_t[used], real_t, self_index=used)
        # The matrix expansion leaves float32 rounding noise: re-measure the chosen pairs directly, so that
        # a verbatim copy is at distance 0 exactly.
        d_fake = (fake_t - real_t[idx]).double().norm(dim=1)
        d_used = (real_t[used] - real_t[used_nn]).double().norm(dim=1)
    fake_distance = d_fake.numpy()
    real_distance = d_used.numpy()[inverse.numpy()]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(fake_distance == 0, 0.0, fake_distance / real_distance)
    return NearestReal(idx.numpy(), fake_distance, real_distance, ratio)


def save_pairs_sheet(
    path: str | Path, fake: np.ndarray, real: np.ndarray, result: NearestReal, pairs: int = SHEET_PAIRS
) -> Path:
    """PNG of the `pairs` closest (fake | nearest real) pairs, lowest ratio first, 4 pairs per row."""
    order = np.argsort(result.ratio, kind="stable")[:pairs]
    h, w = fake.shape[1:3]
    scale = max(1, -(-64 // max(h, w)))  # upscale small images to >= 64 px, nearest-neighbour
    ch, cw, gap, cols = h * scale, w * scale, 4 * scale, 4
    rows = -(-len(order) // cols)
    sheet = np.full((rows * (ch + gap) + gap, cols * (2 * cw + 3 * gap) + gap, 3), 255, np.uint8)
    for n, i in enumerate(order):
        top = gap + (n // cols) * (ch + gap)
        left = gap + (n % cols) * (2 * cw + 3 * gap)
        for j, image in enumerate((fake[i], real[result.real_index[i]])):
            x = left + j * (cw + gap // 2)
            sheet[top : top + ch, x : x + cw] = image.repeat(scale, axis=0).repeat(scale, axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(path)
    return path


def memorization(
    real: np.ndarray, fake: np.ndarray, out_dir: str | Path | None = None, threshold: float = COPY_THRESHOLD
) -> MetricResult:
    """`nn_copy_fraction` (ratio < threshold), `nn_ratio_median`; writes out_dir/nearest_pairs.png if given."""
    check_pair(real, fake)
    if len(real) < 2:
        raise DataError("the memorization check needs at least 2 training images")
    result = nearest_real(real, fake)
    metrics: MetricResult = {
        "nn_copy_fraction": float(np.mean(result.ratio < threshold)),
        "nn_ratio_median": float(np.median(result.ratio)),
        "nn_features": NN_LABEL,
    }
    if out_dir is not None:
        sheet = save_pairs_sheet(Path(out_dir) / "nearest_pairs.png", fake, real, result)
        log.info("closest (fake | training) pairs written to %s", sheet)
    return metrics


@register_metric("nn")
def _nn_metric(ctx: MetricContext) -> MetricResult:
    """Nearest-training-image memorization check (weights-free)."""
    return memorization(ctx.real, ctx.fake, out_dir=ctx.out_dir)
