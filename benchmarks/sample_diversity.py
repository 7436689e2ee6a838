"""How varied a run's fixed-latent samples are, epoch by epoch: a cheap watch for mode collapse, from the grids
the run already wrote (RUN/samples/epoch_*.png: G_ema on the same latents every epoch), with no model loaded.

    python benchmarks/sample_diversity.py RUN [--every 5]

Per epoch grid (its faces cut out of the grid by the layout `make_grid` writes: 2 px padding, a square-ish
grid of the run's `grid_size` latents):
- spread: the mean squared difference between two faces of the grid, over all pairs (pixels in 0..1); falling
  spread = the faces growing alike;
- closest pair: the smallest such difference; near 0 = two latents drawing the same face;
- ink: the share of pixels that are not near-white (darkest channel under 0.9, as benchmarks/ink_colour.py).
The images seen at each epoch's end come from RUN/metrics.csv. The figures are for one run's trend: 64 faces
are few, and the fixed latents are not the seeds `ganime generate` draws.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
from ink_colour import WHITE
from PIL import Image

PADDING = 2  # make_grid's default, used by Trainer.sample_grid


def faces(grid: np.ndarray, n: int) -> np.ndarray:
    """The n faces of a make_grid image (float 0..1, N x H x W x 3)."""
    nrow = max(1, math.ceil(math.sqrt(n)))
    size = (grid.shape[1] - PADDING) // nrow - PADDING
    out = []
    for i in range(n):
        r, k = divmod(i, nrow)
        y, x = PADDING + r * (size + PADDING), PADDING + k * (size + PADDING)
        out.append(grid[y : y + size, x : x + size])
    return np.stack(out).astype(np.float32) / 255


def diversity(x: np.ndarray) -> dict[str, float]:
    flat = x.reshape(len(x), -1)
    sq = (flat**2).sum(1)
    d = (sq[:, None] + sq[None, :] - 2 * flat @ flat.T) / flat.shape[1]
    iu = np.triu_indices(len(x), 1)
    return {"spread": float(d[iu].mean()), "closest": float(d[iu].min()), "ink": float((x.min(-1) < WHITE).mean())}


def epoch_kimg(run: Path) -> dict[int, float]:
    """The images seen (kimg) at the last logged step of each epoch."""
    out: dict[int, float] = {}
    with open(run / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            out[int(float(row["epoch"]))] = float(row["kimg"])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--every", type=int, default=1, help="report every Nth epoch (and the last)")
    args = ap.parse_args()
    grids = sorted((args.run / "samples").glob("epoch_*.png"))
    if not grids:
        print(f"error: no samples/epoch_*.png in {args.run}: give a run directory", file=sys.stderr)
        return 2
    n = json.loads((args.run / "config.json").read_text()).get("grid_size", 64)
    kimg = epoch_kimg(args.run)
    print("| epoch | kimg | spread | closest pair | ink |\n|---|---|---|---|---|")
    for i, path in enumerate(grids):
        if i % args.every and i != len(grids) - 1:
            continue
        epoch = int(path.stem.split("_")[1])
        m = diversity(faces(np.asarray(Image.open(path).convert("RGB")), n))
        k = kimg.get(epoch - 1, kimg.get(epoch, math.nan))
        print(f"| {epoch} | {k:.0f} | {m['spread']:.4f} | {m['closest']:.4f} | {m['ink']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
