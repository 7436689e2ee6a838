"""How much a generator draws and how colourful it is, against the real set: a reading of what the SWD's coarse
levels see (the large shapes and colours), in numbers a person can check on a grid.

    python benchmarks/ink_colour.py --data data/faces-128.npz GEN [GEN ...] [--n 1000]

GEN: a run dir, a checkpoint dir or a generator .safetensors (the shipped one: src/ganime/assets/...). For each,
seeds 0..n-1 at truncation 1 (`sample_generator`, as `ganime eval`); for the data, the n reals `ganime eval`
scores (`real_subset`, seed 0).

Reported, as a Markdown table:
- ink: the share of pixels that are not near-white (the darkest channel under 0.9 of full scale); on white-backed
  sets this is how much of the frame a head, its hair and clothes fill;
- ink in the bottom quarter: long hair and shoulders, what a generator that crops heads short misses;
- saturation of the ink: (max - min) / max over the ink's pixels, 0 for greys; a generator that draws pale or
  muted colour reads low.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from ganime.data.dataset import load_dataset
from ganime.eval_report import real_subset, sample_generator
from ganime.generate import load_generator

WHITE = 0.9  # a pixel whose darkest channel is at or above this is background


def ink_stats(images: np.ndarray) -> dict[str, float]:
    """`images`: N x H x W x 3 uint8."""
    x = images.astype(np.float32) / 255
    top, bottom = x.max(-1), x.min(-1)
    ink = bottom < WHITE
    sat = (top - bottom) / np.maximum(top, 1e-6)
    h = x.shape[1]
    return {
        "ink": float(ink.mean()),
        "ink_bottom": float(ink[:, -h // 4 :].mean()),
        "saturation": float(sat[ink].mean()) if ink.any() else 0.0,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("generators", nargs="+", type=Path)
    ap.add_argument("--data", required=True, help="the real set (a path or a built-in name)")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    resolution = None
    for path in args.generators:
        gen = load_generator(path)
        resolution = resolution or gen.resolution
        rows.append((str(path), ink_stats(sample_generator(gen, args.n))))
    reals = real_subset(load_dataset(args.data, resolution, 3, (255, 255, 255)).images, args.n)
    rows.append((f"real ({args.data})", ink_stats(reals)))
    print(f"| generator ({args.n} images, {resolution} px) | ink | ink, bottom quarter | saturation of the ink |")
    print("|---|---|---|---|")
    for name, s in rows:
        print(f"| {name} | {s['ink']:.3f} | {s['ink_bottom']:.3f} | {s['saturation']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
