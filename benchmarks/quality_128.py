"""128 px faces per CPU-minute: generators scored at 128 px against the faces rendered at 128 px.

    python benchmarks/quality_128.py --data data/faces-128.npz --n 2048 \\
        direct=runs/r128/direct grown=runs/r128/grown low-up=runs/r128/low pretrained-up=runs/pretrained-faces

Each NAME=SOURCE is a run dir, checkpoint or generator .safetensors. A 128 px generator is scored as it draws; a
64 px one is scored upscaled to 128 px with Lanczos (what a page could show instead of a 128 px model). All are
scored the same way: --n images from seeds 0..n-1 against --n real images (a fixed seeded subset), SWD (x 1e3,
Laplacian pyramid 128 -> 16 px; the 128 px level is where the detail a 64 px model lacks shows) and weights-free
precision/recall (ganime.metrics). The floor row scores two disjoint halves of the real images the same way.
Writes OUT/results.json and OUT/<name>.png (seeds 0-31, 8 x 4, at 128 px), with --sheet a PNG of seeds 0-7 of
each generator (a row each, in the order given), and prints a Markdown table with the
training time of each run (from its checkpoint) and the CPU model.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganime import checkpoint as ckpt_io
from ganime.data.dataset import load_dataset
from ganime.device import cpu_model
from ganime.errors import GanimeError
from ganime.eval_report import real_subset
from ganime.generate import load_generator
from ganime.io import make_grid, save_png
from ganime.metrics import compute

RES = 128
METRICS = "swd,pr"


def upscale(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 NHWC images resized to size x size with Lanczos (Pillow)."""
    if images.shape[1] == size:
        return images
    return np.stack([np.asarray(Image.fromarray(a).resize((size, size), Image.Resampling.LANCZOS)) for a in images])


def training_of(source: str) -> dict:
    """Steps, kimg and training seconds of a run's checkpoint (nothing for a bare generator file)."""
    try:
        state = ckpt_io.read_state(ckpt_io.resolve_checkpoint(source))
    except GanimeError:  # a .safetensors generator has no training state
        return {}
    return {"steps": state.get("step"), "kimg": round(state.get("images_seen", 0) / 1000, 1), "train_s": round(state.get("seconds", 0.0))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/faces-128.npz")
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--out", type=Path, default=Path("runs/quality-128"))
    ap.add_argument("--sheet", type=Path, default=None, help="also write seeds 0-7 of each generator, a row each, here")
    ap.add_argument("sources", nargs="+", help="NAME=SOURCE (run dir, checkpoint or .safetensors)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(args.data, RES)
    both = real_subset(ds.images, min(3 * args.n, len(ds)), seed=1)
    real, other = both[: args.n], both[args.n : 2 * args.n]
    rows, sheet = [], []
    fl = compute(METRICS, real, other, seed=0)
    rows.append({"name": "real vs real (floor)", "native": RES, **{k: float(v) for k, v in fl.items() if not isinstance(v, str)}})
    for item in args.sources:
        name, _, source = item.partition("=")
        gen = load_generator(source)
        fake = gen.from_seeds(list(range(args.n)))
        native = fake.shape[1]
        fake = upscale(fake, RES)
        m = compute(METRICS, real, fake, seed=0)
        save_png(make_grid(fake[:32], nrow=8), args.out / f"{name}.png")
        sheet.append(fake[:8])
        rows.append({"name": name, "source": source, "native": native, **training_of(source),
                     **{k: float(v) for k, v in m.items() if not isinstance(v, str)}})
        print(json.dumps(rows[-1]), flush=True)
    floor = rows[0]["swd"]
    if args.sheet:
        save_png(make_grid(np.concatenate(sheet), nrow=8), args.sheet)
    (args.out / "results.json").write_text(json.dumps({"data": args.data, "n": args.n, "cpu": cpu_model(), "rows": rows}, indent=2))
    print("\n| generator | drawn at | steps | kimg | train s | SWD x1e3 at 128 px | / floor | precision | recall |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        drawn = f"{r['native']} px" + (" (Lanczos to 128)" if r["native"] != RES else "")
        print(f"| {r['name']} | {drawn} | {r.get('steps', '')} | {r.get('kimg', '')} | {r.get('train_s', '')} | "
              f"{r['swd']:.1f} | {r['swd'] / floor:.2f} | {r.get('precision', float('nan')):.3f} | {r.get('recall', float('nan')):.3f} |")
    print(f"\n{cpu_model()}, torch {torch.__version__}, data {args.data}, n {args.n}")


if __name__ == "__main__":
    main()
