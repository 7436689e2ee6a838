"""Feature spaces for the metrics: Inception-v3 pool3 (FID weights, optional) and weights-free pixel features."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganime.errors import DataError, MissingDependencyError, MissingWeightsError

log = logging.getLogger(__name__)

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{INCEPTION_FILE}"
INCEPTION_ENV = "GANIME_INCEPTION_WEIGHTS"
INCEPTION_LABEL = "inception-pool3"
INCEPTION_DIM = 2048

# Weights-free fallback for precision/recall: 16x16 area-downsampled pixels, PCA to 64 dims fitted on the
# real set. Cheap and deterministic, but NOT comparable to published precision/recall numbers.
FALLBACK_SIZE = 16
FALLBACK_DIMS = 64
FALLBACK_LABEL = f"pixels{FALLBACK_SIZE}-pca{FALLBACK_DIMS}"


@dataclass(frozen=True)
class FeatureStats:
    """Features of one image set with their mean and covariance (as FID needs them)."""

    features: np.ndarray  # (N, D) float32
    mu: np.ndarray  # (D,) float64
    sigma: np.ndarray  # (D, D) float64


def check_images(images: np.ndarray, name: str) -> np.ndarray:
    """Return `images` if it is a non-empty uint8 (N, H, W, 3) array, else raise DataError."""
    if not isinstance(images, np.ndarray):
        raise DataError(f"{name} images must be a numpy array, got {type(images).__name__}")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise DataError(
            f"{name} images must be a non-empty uint8 array of shape (N, H, W, 3), "
            f"got {images.dtype} {images.shape}"
        )
    return images


def check_pair(real: np.ndarray, fake: np.ndarray) -> None:
    """Check both image sets and that their images have the same size."""
    check_images(real, "real")
    check_images(fake, "fake")
    if real.shape[1:] != fake.shape[1:]:
        raise DataError(f"real and fake images differ in size: {real.shape[1:3]} vs {fake.shape[1:3]}")


def downsample(images: np.ndarray, size: int, batch_size: int = 2048) -> np.ndarray:
    """Area-downsample uint8 NHWC images to (N, 3 * size * size) float32 in [0, 1] (no-op resize if smaller)."""
    out = np.empty((len(images), 3 * size * size), np.float32)
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start : start + batch_size]).permute(0, 3, 1, 2).float().div_(255.0)
        if x.shape[-2:] != (size, size):
            mode = "area" if min(x.shape[-2:]) >= size else "bilinear"
            x = F.interpolate(x, size=(size, size), mode=mode)
        out[start : start + len(x)] = x.reshape(len(x), -1).numpy()
    return out


def fit_pca(x: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and top-`dims` principal axes (D, dims) of the rows of `x`."""
    mean = x.mean(axis=0, dtype=np.float64)
    centred = (x - mean).astype(np.float64)
    # Eigen-decomposition of the D x D covariance: cheap for D = 768 and any N.
    eigvals, eigvecs = np.linalg.eigh(centred.T @ centred)
    order = np.argsort(eigvals)[::-1][:dims]
    return mean.astype(np.float32), eigvecs[:, order].astype(np.float32)


def fallback_features(real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weights-free features (`FALLBACK_LABEL`): 16 px pixels projected on the real set's top 64 PCA axes."""
    real_px = downsample(real, FALLBACK_SIZE)
    fake_px = downsample(fake, FALLBACK_SIZE)
    mean, axes = fit_pca(real_px, FALLBACK_DIMS)
    return (real_px - mean) @ axes, (fake_px - mean) @ axes


def find_inception_weights(path: str | Path | None = None) -> Path | None:
    """The Inception weights file: `path`, else $GANIME_INCEPTION_WEIGHTS, else the default cache path.

    An explicit `path` or env var that points nowhere raises MissingWeightsError; a missing default gives None.
    """
    explicit = path if path is not None else os.environ.get(INCEPTION_ENV) or None
    if explicit is not None:
        candidate = Path(explicit).expanduser()
        if candidate.is_dir():
            candidate = candidate / INCEPTION_FILE
        if candidate.is_file():
            return candidate
        source = "inception_weights argument" if path is not None else f"${INCEPTION_ENV}"
        raise MissingWeightsError(_missing_weights_message([f"{candidate} (from {source})"]))
    default = default_inception_path()
    return default if default.is_file() else None


def default_inception_path() -> Path:
    """Where the Inception weights are looked for when no path is given."""
    return Path.home() / ".cache" / "ganime" / INCEPTION_FILE


def resolve_inception_weights(path: str | Path | None = None) -> Path:
    """Like `find_inception_weights`, but a missing file always raises MissingWeightsError."""
    found = find_inception_weights(path)
    if found is None:
        searched = ["inception_weights argument (not given)", f"${INCEPTION_ENV} (not set)"]
        raise MissingWeightsError(_missing_weights_message([*searched, str(default_inception_path())]))
    return found


def _missing_weights_message(searched: list[str]) -> str:
    return (
        f"Inception weights {INCEPTION_FILE} not found; searched: {'; '.join(searched)}. "
        f"Download it by hand from {INCEPTION_URL} (the pytorch-fid release) and put it at "
        f"{default_inception_path()}, or pass its path (inception_weights=... or ${INCEPTION_ENV})."
    )


class InceptionPool3(nn.Module):
    """pytorch-fid's FID Inception-v3 up to the 2048-d pool3 output, on [0, 1] NCHW images."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            net.Conv2d_1a_3x3,
            net.Conv2d_2a_3x3,
            net.Conv2d_2b_3x3,
            nn.MaxPool2d(kernel_size=3, stride=2),
            net.Conv2d_3b_1x1,
            net.Conv2d_4a_3x3,
            nn.MaxPool2d(kernel_size=3, stride=2),
            net.Mixed_5b,
            net.Mixed_5c,
            net.Mixed_5d,
            net.Mixed_6a,
            net.Mixed_6b,
            net.Mixed_6c,
            net.Mixed_6d,
            net.Mixed_6e,
            net.Mixed_7a,
            net.Mixed_7b,
            net.Mixed_7c,
            nn.AdaptiveAvgPool2d(output_size=(1, 1)),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Same input convention as pytorch-fid's InceptionV3(resize_input=True, normalize_input=True).
        x = F.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False)
        return self.blocks(2 * x - 1).flatten(1)


def load_inception(weights: str | Path | None = None, device: torch.device | str = "cpu") -> InceptionPool3:
    """Build pytorch-fid's FID Inception-v3 and load the local weights file (never downloads).

    Weights are checked before the dependency, so a missing file is reported even without pytorch-fid.
    """
    path = resolve_inception_weights(weights)
    try:
        from pytorch_fid import inception as pfi
    except ImportError as err:
        raise MissingDependencyError(
            "FID/KID need pytorch-fid: pip install 'ganime[fid]' (it also installs torchvision)"
        ) from err
    # fid_inception_v3() would download the weights; assemble the same network and load the local file.
    net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pfi.FIDInceptionE_1(1280)
    net.Mixed_7c = pfi.FIDInceptionE_2(2048)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    log.info("loaded Inception weights from %s", path)
    return InceptionPool3(net).eval().requires_grad_(False).to(device)


@torch.inference_mode()
def inception_features(
    images: np.ndarray, model: nn.Module, device: torch.device | str = "cpu", batch_size: int = 64
) -> np.ndarray:
    """(N, 2048) float32 pool3 features of uint8 NHWC images."""
    out = np.empty((len(images), INCEPTION_DIM), np.float32)
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(images[start : start + batch_size]).to(device)
        x = batch.permute(0, 3, 1, 2).float().div_(255.0)
        out[start : start + len(batch)] = model(x).float().cpu().numpy()
    return out


def feature_stats(feats: np.ndarray) -> FeatureStats:
    """Mean and unbiased covariance of (N, D) features (as pytorch-fid computes them)."""
    f64 = feats.astype(np.float64)
    return FeatureStats(feats, f64.mean(axis=0), np.cov(f64, rowvar=False))


def _cache_path(cache_dir: str | Path, real_key: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", real_key)[:80]
    digest = hashlib.sha1(real_key.encode()).hexdigest()[:8]
    return Path(cache_dir) / f"{INCEPTION_LABEL}-{safe}-{digest}.npz"


def _load_cached(path: Path, n_real: int) -> FeatureStats | None:
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        if int(data["n_images"]) != n_real:
            log.warning("ignoring %s: made from %d images, not %d", path, int(data["n_images"]), n_real)
            return None
        return FeatureStats(data["features"], data["mu"], data["sigma"])


def _save_cached(path: Path, stats: FeatureStats) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, features=stats.features, mu=stats.mu, sigma=stats.sigma, n_images=len(stats.features))
    os.replace(tmp, path)


def inception_stats(
    real: np.ndarray,
    fake: np.ndarray,
    *,
    weights: str | Path | None = None,
    device: torch.device | str = "cpu",
    cache_dir: str | Path | None = None,
    real_key: str | None = None,
) -> tuple[FeatureStats, FeatureStats]:
    """Inception statistics of the real and fake sets; real ones are cached in `cache_dir` under `real_key`."""
    cache = _cache_path(cache_dir, real_key) if cache_dir is not None and real_key is not None else None
    real_stats = _load_cached(cache, len(real)) if cache is not None else None
    if real_stats is not None:
        log.info("real Inception statistics from cache %s", cache)
        # Still resolve the weights: fake features need them, and a missing file should fail early.
    model = load_inception(weights, device)
    if real_stats is None:
        real_stats = feature_stats(inception_features(real, model, device))
        if cache is not None:
            _save_cached(cache, real_stats)
            log.info("cached real Inception statistics in %s", cache)
    return real_stats, feature_stats(inception_features(fake, model, device))
