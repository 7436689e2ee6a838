"""Time each weights-free metric (swd, pr, nn) on synthetic image sets: python benchmarks/metrics_speed.py --n 10000."""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ganime.metrics import compute


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
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"cpu: {cpu_model()} ({torch.get_num_threads()} torch threads)")
    print(f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}")
    real = synthetic_images(args.n, args.size, seed=0)
    fake = synthetic_images(args.n, args.size, seed=1)
    print(f"sets: {args.n} real + {args.n} fake images of {args.size} px")
    for name in args.metrics.split(","):
        start = time.perf_counter()
        values = compute([name], real, fake, seed=0)
        seconds = time.perf_counter() - start
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        print(f"{name:4s} {seconds:7.1f} s   {shown}")


if __name__ == "__main__":
    main()
