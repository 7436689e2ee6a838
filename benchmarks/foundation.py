"""Foundation figures: data decode images/s and `tutorial` training img/s at batch 128 on this machine.

    python benchmarks/foundation.py --seconds 60
Prints the CPU model, versions and both rates. Not a test: timings belong here, not in pytest.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganime.config import override, preset
from ganime.data.dataset import load_dataset
from ganime.device import cpu_model, resolve_device, set_threads
from ganime.training.trainer import Trainer


def decode_rate(n: int, tmp: Path) -> tuple[float, int]:
    """Decode n 96x96 PNG faces-like images (Mckinsey666 size) to 64 px; returns images/s."""
    rng = np.random.default_rng(0)
    src = tmp / "imgs"
    src.mkdir()
    base = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    for i in range(n):
        img = np.roll(base, i, axis=1)  # distinct but compressible like real art
        Image.fromarray(img).save(src / f"{i:05d}.png")
    t0 = time.perf_counter()
    ds = load_dataset(src, 64, cache_dir=tmp / "cache", refresh=True)
    return len(ds) / (time.perf_counter() - t0), len(ds)


def train_rate(seconds: float, batch: int, device: torch.device) -> float:
    """img/s of the tutorial preset's train step (64 px, batch 128) on random data."""
    cfg = override(preset("tutorial"), batch_size=batch)
    images = np.random.default_rng(0).integers(0, 256, (batch * 4, 64, 64, 3), dtype=np.uint8)
    from ganime.data.dataset import ImageDataset

    tr = Trainer(cfg, ImageDataset(images, "random"), device, Path(tempfile.mkdtemp()))
    x, _ = tr.loader.batch(0, 0)
    tr.train_step(x, None)  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        x, _ = tr.loader.batch(0, n % tr.loader.steps_per_epoch)
        tr.train_step(x, None)
        n += 1
    return n * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--decode-n", type=int, default=2000)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = resolve_device(args.device)
    threads = set_threads(0)
    print(f"cpu: {cpu_model()}  threads: {threads}  torch {torch.__version__}  device {device}")
    with tempfile.TemporaryDirectory() as tmp:
        rate, n = decode_rate(args.decode_n, Path(tmp))
    print(f"decode: {rate:.0f} images/s ({n} PNGs of 96x96 -> 64x64, {threads} threads)")
    print(f"tutorial_train: {train_rate(args.seconds, args.batch, device):.1f} img/s (64x64, batch {args.batch})")


if __name__ == "__main__":
    main()
