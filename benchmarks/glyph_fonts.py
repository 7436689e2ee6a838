"""Glyph GAN demo: fonts from a trained `glyphs` run, and one specimen sheet of them for the docs.

    ganime data glyphs /usr/share/fonts/truetype --chars "A-Za-z0-9" --size 32 --out data/glyphs32
    ganime train --preset glyphs --data data/glyphs32 --minutes 14 --out runs/glyphs
    python benchmarks/glyph_fonts.py runs/glyphs --seeds 1 2 3 --out docs/images/glyph-fonts.png

Each font is written with the same code as `ganime font` (generate every character from one style latent,
trace, build the file) and its specimen is rendered by FreeType from the written file. Prints the CPU, the
run's training time and steps (from its metrics), and the seconds each font took to write.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from ganime.device import cpu_model
from ganime.fonts.make import write_font
from ganime.fonts.specimen import save_image, sheet, specimen
from ganime.generate import load_generator


def nn_accuracy(gen, per_char: int) -> tuple[float, dict[str, float]]:
    """Share of generated glyphs whose nearest training glyph (L2 over pixels) is the requested character."""
    import numpy as np

    from ganime.checkpoint import read_state
    from ganime.data.dataset import load_dataset

    state_cfg = read_state(Path(gen.source))["config"]
    m = gen.model
    data = load_dataset(state_cfg["data"]["path"], m.resolution, m.channels, tuple(state_cfg["data"]["background"]))
    real = torch.from_numpy(data.images.reshape(len(data), -1).astype(np.float32))
    real_labels = [data.classes[i] for i in data.labels]
    scores = {}
    for i, ch in enumerate(gen.classes):
        z = torch.randn(per_char, gen.z_dim, generator=torch.Generator().manual_seed(10_000 + i))
        fake = torch.from_numpy(gen.images(z, gen.labels_for([ch] * per_char)).reshape(per_char, -1).astype(np.float32))
        nearest = torch.cdist(fake, real).argmin(dim=1).tolist()
        scores[ch] = sum(real_labels[j] == ch for j in nearest) / per_char
    return sum(scores.values()) / len(scores), scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="run dir or checkpoint of a glyphs model")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--out", type=Path, default=Path("docs/images/glyph-fonts.png"))
    ap.add_argument("--fonts-dir", type=Path, default=None, help="where the .otf files go (default: next to --out)")
    ap.add_argument("--truncation", type=float, default=1.0)
    ap.add_argument("--nn", type=int, default=0, help="also score N samples per character by nearest training glyph")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"cpu: {cpu_model()}  torch threads: {torch.get_num_threads()}  torch {torch.__version__}")
    metrics = args.run / "metrics.csv"
    if metrics.is_file():
        rows = list(csv.DictReader(metrics.open()))
        if rows:
            last = rows[-1]
            print(
                f"run: step {last['step']}, {float(last['kimg']):.1f} kimg, {float(last['seconds']) / 60:.1f} min of training steps"
            )
    gen = load_generator(args.run)
    print(f"model: {gen.source}, {len(gen.classes)} characters at {gen.resolution} px")
    if args.nn:
        accuracy, per_char = nn_accuracy(gen, args.nn)
        worst = ", ".join(f"{c} {a:.0%}" for c, a in sorted(per_char.items(), key=lambda kv: kv[1])[:5])
        print(
            f"nearest-neighbour accuracy: {accuracy:.1%} over {args.nn} samples per character "
            f"(chance {1 / len(per_char):.1%}); worst: {worst}"
        )
    fonts_dir = args.fonts_dir or args.out.parent
    pages = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        font = fonts_dir / f"ganime-glyphs-{seed}.otf"
        result = write_font(gen, seed, font, name=f"Ganime Glyphs {seed}", truncation=args.truncation)
        print(
            f"seed {seed}: {result.font} ({len(result.built.data) / 1024:.0f} KiB, {len(result.built.chars)} glyphs, "
            f"{len(result.built.empty)} empty) in {time.perf_counter() - t0:.1f} s ({time.process_time() - cpu0:.1f} s CPU)"
        )
        pages.append(specimen(str(result.font), result.built.chars, f"Ganime Glyphs {seed} (style seed {seed})", 40))
    print(f"wrote {save_image(sheet(pages), args.out)}")


if __name__ == "__main__":
    main()
