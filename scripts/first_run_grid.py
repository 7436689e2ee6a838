"""Make the README's first-run picture: train as the README's first command does, then draw its grid.

    python scripts/first_run_grid.py                  # 5 minutes of tutorial-small on the built-in faces
    python scripts/first_run_grid.py --minutes 5 --out runs/first-run

Writes docs/images/first-run-grid.png (seeds 0-31, as `ganime generate RUN --grid` draws them, scaled 2x so the
32 px faces can be seen) and prints the caption the README uses: images seen, training time, CPU and threads.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import ganime
from ganime.config import override, preset
from ganime.generate import load_generator
from ganime.io import make_grid

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "images" / "first-run-grid.png"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tutorial-small", help="the README's first command's preset")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--out", type=Path, default=Path("runs/first-run"))
    args = ap.parse_args()
    cfg = override(preset(args.preset), minutes=args.minutes, epochs=0)
    result = ganime.train(cfg, args.out, progress=False)
    gen = load_generator(result.run_dir)
    grid = make_grid(gen.from_seeds(list(range(32))), nrow=8)
    scale = max(1, 64 // gen.resolution)
    img = Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    img.save(OUT)
    runtime = json.loads((result.run_dir / "runtime.json").read_text())
    caption = (
        f"`{args.preset}` after {result.seconds / 60:.1f} minutes of training, {result.images_seen / 1000:.0f} kimg, "
        f"on {runtime.get('cpu', '?')} with {runtime.get('threads', '?')} threads, "
        f"{runtime.get('precision', '?')}; seeds 0-31 at {gen.resolution} px, shown at {gen.resolution * scale} px"
    )
    print(json.dumps({"grid": str(OUT), "caption": caption, "step": result.step, "std": float(np.std(grid))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
