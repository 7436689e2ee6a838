"""Runtime of each metric for --n images at --size px: python benchmarks/metrics_speed.py --n 10000.

swd, pr (weights-free fallback features) and nn run on synthetic image sets through `ganime.metrics.compute`.
FID and KID are timed in two parts, since the Inception weights cannot be shipped: their maths on synthetic
2048-d features of --n images, and the Inception-v3 forward pass (random weights: same cost) on a few images,
extrapolated to --n images and printed as such. --swd-vs-sort also runs SWD with each direction's W1 from two
numpy sorts, in the same process, and prints the ratio (`swd_speedup_vs_sort: X.XX`).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ganime.metrics import compute, swd
from ganime.metrics.features import INCEPTION_DIM, feature_stats, inception_features
from ganime.metrics.fid import frechet_distance
from ganime.metrics.inception import FIDInceptionV3
from ganime.metrics.kid import kid


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else platform.processor()."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def synthetic_images(n: int, size: int, seed: int) -> np.ndarray:
    """Smooth random colour fields plus per-pixel noise: structure at every pyramid level."""
    gen = torch.Generator().manual_seed(seed)
    out = np.empty((n, size, size, 3), np.uint8)
    for start in range(0, n, 1024):
        count = min(1024, n - start)
        field = torch.rand(count, 3, 8, 8, generator=gen) * 255
        x = F.interpolate(field, size=(size, size), mode="bicubic", align_corners=False)
        x = x + torch.randn(count, 3, size, size, generator=gen) * 12
        out[start : start + count] = x.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def main() -> None:
    """Parse flags, build two image sets, time each metric through `ganime.metrics.compute`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000, help="images per set")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--metrics", default="swd,pr,nn", help="comma-separated weights-free metrics")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--inception-images", type=int, default=32, help="images for the Inception timing and FID/KID maths (0 = skip)"
    )
    parser.add_argument(
        "--swd-vs-sort",
        action="store_true",
        help="also run SWD with each direction's W1 from two numpy sorts (the plain way) and print the ratio",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"cpu: {cpu_model()} ({torch.get_num_threads()} torch threads)")
    print(f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}")
    real = synthetic_images(args.n, args.size, seed=0)
    fake = synthetic_images(args.n, args.size, seed=1)
    print(f"sets: {args.n} real + {args.n} fake images of {args.size} px")
    print("metric  wall s   cpu s   values (cpu s = all threads' CPU time: on a shared machine it shows the work)")
    for name in args.metrics.split(","):
        clock = Clock()
        values = compute([name], real, fake, seed=0)
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        print(f"{name:4s} {clock}   {shown}")
    if args.swd_vs_sort:
        time_swd_against_sorting(real, fake)
    if args.inception_images:
        time_feature_maths(args.n)
        time_inception(args.inception_images, args.n, args.size)
    if hasattr(os, "getloadavg"):
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")


def time_swd_against_sorting(real: np.ndarray, fake: np.ndarray) -> None:
    """SWD as shipped vs the same SWD with W1 = mean |sort(a) - sort(b)| per direction, side by side."""

    def by_sorting(a, b, scratch=None, weights_a=None, weights_b=None) -> float:
        a, b = (x if w is None else w.expand(x) for x, w in ((a, weights_a), (b, weights_b)))  # all draws
        return float(np.abs(np.sort(a) - np.sort(b)).sum(dtype=np.float64)) / a.size

    clock = Clock()
    ours = swd.sliced_wasserstein(real, fake)
    ours_s = clock.seconds()[0]
    shipped, swd.wasserstein_1d = swd.wasserstein_1d, by_sorting
    try:
        clock = Clock()
        sorted_ = swd.sliced_wasserstein(real, fake)
        sort_s = clock.seconds()[0]
    finally:
        swd.wasserstein_1d = shipped
    gap = max(abs(ours[k] - sorted_[k]) / max(abs(sorted_[k]), 1e-12) for k in ours)
    print(
        f"swd with numpy sorts {sort_s:7.1f} s wall, as shipped {ours_s:7.1f} s (largest relative difference {gap:.1e})"
    )
    print(f"swd_speedup_vs_sort: {sort_s / ours_s:.2f}")


def time_feature_maths(n: int) -> None:
    """FID (statistics + Frechet distance) and KID (100 subsets of 1,000) on synthetic 2048-d features."""
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(64, INCEPTION_DIM)) / 8  # correlated, low-rank-ish like real pool3 features
    feats_real = np.abs(rng.normal(size=(n, 64)) @ mixing).astype(np.float32)
    feats_fake = np.abs(rng.normal(0.1, 1, size=(n, 64)) @ mixing + rng.normal(0, 0.05, (n, INCEPTION_DIM)))
    feats_fake = feats_fake.astype(np.float32)
    clock = Clock()
    real_stats, fake_stats = feature_stats(feats_real), feature_stats(feats_fake)
    fid = frechet_distance(real_stats.mu, real_stats.sigma, fake_stats.mu, fake_stats.sigma)
    print(f"fid  {clock}   maths only: {n} x {INCEPTION_DIM} synthetic features, fid={fid:.4g}")
    clock = Clock()
    mean, std = kid(feats_real, feats_fake)
    print(f"kid  {clock}   maths only: 100 subsets of 1000, kid={mean:.4g} +- {std:.2g}")


def time_inception(count: int, n: int, size: int) -> None:
    """Inception-v3 forward (299 px, as FID/KID/pr need it) on `count` images, extrapolated to 2 n images."""
    net = FIDInceptionV3().eval()  # random weights: the cost of the real network
    images = synthetic_images(count, size, seed=2)
    inception_features(images[:2], net)  # warm-up
    clock = Clock()
    inception_features(images, net)
    wall, cpu = clock.seconds()
    print(
        f"inception {wall / count * 1000:.0f} ms/image wall, {cpu / count * 1000:.0f} ms/image cpu ({count} timed): "
        f"~{wall / count * 2 * n / 60:.0f} min wall for {n} generated + {n} real images (the real statistics "
        "are cached after the first run)"
    )


class Clock:
    """Wall and process CPU time since creation."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def seconds(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu

    def __str__(self) -> str:
        wall, cpu = self.seconds()
        return f"{wall:7.1f} {cpu:7.1f}"


if __name__ == "__main__":
    main()
