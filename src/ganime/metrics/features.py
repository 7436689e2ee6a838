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

from ganime.data.dataset import cache_root
from ganime.errors import DataError, MissingWeightsError
from ganime.io import atomic_path
from ganime.metrics.inception import PytorchFIDInception, build_network

log = logging.getLogger(__name__)

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{INCEPTION_FILE}"
INCEPTION_ENV = "GANIME_INCEPTION_WEIGHTS"
INCEPTION_LABEL = "inception-pool3"
INCEPTION_DIM = 2048

# Weights-free fallback for precision/recall: two blocks of equal weight, PCA to 64 dims fitted on the real set.
# Colour layout (8x8 area-downsampled RGB) sees colours and coarse shapes; edge layout (gradient magnitude in 4
# orientations of the 32 px grey image, pooled over a 4x4 grid) sees outlines, so blurred or blob-like samples
# fall outside the real manifold. Pixels alone (the former 16 px PCA features) miss that: blobs kept 0.77
# precision on faces. Cheap and deterministic, but NOT comparable to published precision/recall numbers.
# Sharpness (the share of pixels whose full-resolution gradient exceeds each of 4 steps) is a block of its own,
# each step standardised: blobs lie near the mean of a diverse set's layouts, inside some real point's k-NN
# ball, but far out on this axis.
FALLBACK_DIMS = 64
FALLBACK_LABEL = f"colour8-edges4-sharp4-pca{FALLBACK_DIMS}"
SHARP_STEPS = (0.1, 0.2, 0.3, 0.5)  # gradient steps (grey levels 0..1); noise of sigma 6/255 rarely passes 0.1


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
        x = torch.from_numpy(np.array(images[start : start + batch_size])).permute(0, 3, 1, 2).float().div_(255.0)
        if x.shape[-2:] != (size, size):
            mode = "area" if min(x.shape[-2:]) >= size else "bilinear"
            x = F.interpolate(x, size=(size, size), mode=mode)
        out[start : start + len(x)] = x.reshape(len(x), -1).numpy()
    return out


def fit_pca(x: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and top-`dims` principal axes (D, dims) of the rows of `x`."""
    mean = x.mean(axis=0, dtype=np.float64)
    centred = (x - mean).astype(np.float64)
    if len(x) < x.shape[1]:  # fewer rows than dimensions: the thin SVD of the data is the cheaper route
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        axes = vt[:dims].T
    else:  # eigen-decomposition of the D x D scatter matrix: cheap for D = 768 and any N
        eigvals, eigvecs = np.linalg.eigh(centred.T @ centred)
        axes = eigvecs[:, np.argsort(eigvals)[::-1][:dims]]
    if axes.shape[1] < dims:  # fewer images than dims: pad with zero axes so every set has `dims` features
        axes = np.pad(axes, ((0, 0), (0, dims - axes.shape[1])))
    return mean.astype(np.float32), axes.astype(np.float32)


def describe(images: np.ndarray, batch_size: int = 1024) -> list[np.ndarray]:
    """The fallback's raw blocks of uint8 NHWC images: [(N, 192) colour layout, (N, 64) edge layout,
    (N, 4) sharpness]."""
    colour, edges, sharpness = [], [], []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.array(images[start : start + batch_size])).permute(0, 3, 1, 2).float().div_(255.0)
        colour.append(F.adaptive_avg_pool2d(x, 8).flatten(1))
        grey = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:]).contiguous()
        fine = torch.hypot(grey[..., :-1, 1:] - grey[..., :-1, :-1], grey[..., 1:, :-1] - grey[..., :-1, :-1])
        sharpness.append(torch.stack([(fine > t).float().mean((1, 2, 3)) for t in SHARP_STEPS], 1))
        if grey.shape[-1] > 32:  # at 32 px pixel noise averages out while outlines stay
            grey = F.adaptive_avg_pool2d(grey, 32)
        gx = (grey[..., :, 1:] - grey[..., :, :-1])[..., :-1, :]
        gy = (grey[..., 1:, :] - grey[..., :-1, :])[..., :, :-1]
        oriented = torch.cat([gx.abs(), gy.abs(), (gx + gy).abs() / 2**0.5, (gx - gy).abs() / 2**0.5], 1)
        edges.append(F.adaptive_avg_pool2d(oriented, 4).flatten(1))
    return [torch.cat(colour).numpy(), torch.cat(edges).numpy(), torch.cat(sharpness).numpy()]


def fallback_features(real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weights-free features (`FALLBACK_LABEL`): colour and edge layouts centred and scaled by the real set's
    total spread (so they weigh the same), sharpness as below, projected on the real set's top 64 principal axes."""
    real_blocks, fake_blocks = describe(real), describe(fake)
    real_parts, fake_parts = [], []
    for r, f in zip(real_blocks[:2], fake_blocks[:2]):
        mean = r.mean(axis=0)
        scale = float(np.sqrt(((r - mean) ** 2).sum(axis=1).mean())) or 1.0
        real_parts.append((r - mean) / scale)
        fake_parts.append((f - mean) / scale)
    # Sharpness in units of half its real mean (or its spread, if larger), over sqrt(4 steps): losing half the
    # sharp pixels at every step moves an image ~1, about a k-NN radius; a blob with none moves ~2. Scaling by
    # the spread alone would make a uniform set (every face outlined alike) reject any slight softening.
    sharp_mean = real_blocks[2].mean(axis=0)
    unit = np.maximum(np.maximum(real_blocks[2].std(axis=0), 0.5 * sharp_mean), 1e-3) * np.sqrt(len(SHARP_STEPS))
    real_parts.append((real_blocks[2] - sharp_mean) / unit)
    fake_parts.append((fake_blocks[2] - sharp_mean) / unit)
    real_x, fake_x = np.concatenate(real_parts, 1), np.concatenate(fake_parts, 1)
    mean, axes = fit_pca(real_x, FALLBACK_DIMS)
    return (real_x - mean) @ axes, (fake_x - mean) @ axes


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
    """Where the Inception weights are looked for when no path is given: $GANIME_CACHE or ~/.cache/ganime."""
    return cache_root() / INCEPTION_FILE


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
        f"{default_inception_path()}, or pass its path (--inception-weights PATH, inception_weights=... "
        f"or ${INCEPTION_ENV}). ganime runs the network itself; pytorch-fid (and torch-fidelity) are only an "
        f"optional extra, pip install 'ganime[fid]', which pulls torchvision and a matching torch build. "
        f"SWD and nn need no weights; see docs/metrics.md."
    )


def load_inception(
    weights: str | Path | None = None, device: torch.device | str = "cpu", prefer_pytorch_fid: bool = True
) -> nn.Module:
    """The FID Inception-v3 (pytorch-fid's if installed, else ganime's port) with the local weights loaded.

    Never downloads. The module maps [0, 1] NCHW images to (N, 2048) pool3 features.

    Takes pytorch-fid's `.pth` (read with `weights_only=True`: tensors only, no code) or the same state dict
    saved as `.safetensors`. A file with other keys or shapes is refused: it would give numbers that look
    like FID but are not.
    """
    path = resolve_inception_weights(weights)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 (a truncated download, an HTML error page saved as .pth, ...)
        raise MissingWeightsError(
            f"could not read Inception weights {path}: {err}. Download {INCEPTION_FILE} again from {INCEPTION_URL}"
        ) from None
    net, origin = build_network(prefer_pytorch_fid)
    target = net.net if isinstance(net, PytorchFIDInception) else net
    # Old-format BatchNorm state dicts have no num_batches_tracked; nothing else may be missing.
    problem = "" if isinstance(state, dict) else f"it holds a {type(state).__name__}, not a state dict"
    if not problem:
        try:
            missing, unexpected = target.load_state_dict(state, strict=False)
        except RuntimeError as err:  # right names, wrong shapes
            missing, unexpected, problem = [], [], str(err).splitlines()[0]
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            problem = f"{len(missing)} keys missing (e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
    if problem:
        raise MissingWeightsError(
            f"{path} is not the FID Inception weights {INCEPTION_FILE}: {problem}. Get the file from {INCEPTION_URL}"
        )
    log.info("loaded Inception weights from %s into the %s network", path, origin)
    return net.eval().requires_grad_(False).to(device)


@torch.inference_mode()
def inception_features(
    images: np.ndarray, model: nn.Module, device: torch.device | str = "cpu", batch_size: int = 64
) -> np.ndarray:
    """(N, 2048) float32 pool3 features of uint8 NHWC images."""
    out = np.empty((len(images), INCEPTION_DIM), np.float32)
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.array(images[start : start + batch_size])).to(device)
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
    with atomic_path(path) as tmp:
        np.savez(tmp, features=stats.features, mu=stats.mu, sigma=stats.sigma, n_images=len(stats.features))


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
