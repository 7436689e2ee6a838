"""Make the README's first-run picture: train as the README's first command does, then draw its grid.

    python scripts/first_run_grid.py                  # 5 minutes of the default (grow) on the built-in faces
    python scripts/first_run_grid.py --minutes 5 --out runs/first-run

Writes docs/images/first-run-grid.png (seeds 0-31, as `ganime generate RUN --grid` draws them: images under 64 px
enlarged pixel for pixel) and prints the caption the README uses: images seen, training time, CPU and threads,
and the growth plan the run followed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import ganime
from ganime.config import override, preset
from ganime.generate import load_generator
from ganime.io import GRID_TILE, make_grid, save_png
from ganime.training.growth import read_plan

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "images" / "first-run-grid.png"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="grow", help="the README's first command's preset (the CLI default)")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--out", type=Path, default=Path("runs/first-run"))
    args = ap.parse_args()
    cfg = override(preset(args.preset), minutes=args.minutes, epochs=0)
    result = ganime.train(cfg, args.out, progress=False)
    gen = load_generator(result.run_dir)
    grid = make_grid(gen.from_seeds(list(range(32))), nrow=8, min_tile=GRID_TILE)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    save_png(grid, OUT)
    runtime = json.loads((result.run_dir / "runtime.json").read_text())
    plan = read_plan(result.run_dir)
    stages = ", ".join(
        f"{s['resolution']} px from {s['start_kimg']:g} kimg" for s in (plan or {}).get("stages", [])
    )
    caption = (
        f"`{args.preset}` after {result.seconds / 60:.1f} minutes of training, {result.images_seen / 1000:.0f} kimg, "
        f"on {runtime.get('cpu', '?')} with {runtime.get('threads', '?')} threads, "
        f"{runtime.get('precision', '?')}; seeds 0-31 at {gen.resolution} px" + (f"; grew: {stages}" if stages else "")
    )
    print(json.dumps({"grid": str(OUT), "caption": caption, "step": result.step, "std": float(np.std(grid))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
