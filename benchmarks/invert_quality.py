"""Search by picture on real faces: how close the reconstructions are, and how long one picture takes.

    python benchmarks/invert_quality.py [--resolution 128|64] [--faces 50] [--steps 150] [--seeds 512] \
        [--threads 2] [--grid docs/images/invert-examples.png]

Faces: the first N of the attribute classifier's held-out split of the shipped faces set
(`np.random.default_rng(0).permutation(13997)`, src/ganime/assets/dicebear-faces-64.npz). They were held out
from the classifier, NOT from the generator: the generator was trained on all 13,997 faces (rendered at 128 px),
so this measures how well `invert` finds faces the generator has seen, from 64 px renders (upscaled with
Lanczos for the 128 px generator, so softer than its training images).

Generators: 128 px = the shipped generator; 64 px = its 64 px trunk alone (the `modern` 64 px network it was
grown from, fine-tuned with it), the cost of a 64 px run.

Reported, each against two baselines (the best seed alone, before refining; a random seed):
- pixel error: mean |input - face| over pixels, in levels of 255, at the generator's size;
- attribute agreement: how often the attribute classifier gives the input and its face the same hair colour,
  skin colour, long/short hair and glasses (all four at once), and each of its 9 attributes on average;
- SWD (x 1e3) between the inputs and the faces (the project's Laplacian-pyramid patch SWD; with 50 images it is
  noisy, so compare the columns with each other, not with docs/pretrained.md's 5,000-image values);
- seconds per picture (wall time on this machine at --threads), median and slowest, and the process's CPU time
  (user + system over its threads: on a machine shared with other jobs the wall time grows, this much less).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ganime.generate import LoadedGenerator, load_generator
from ganime.invert import fit_picture, invert
from ganime.io import make_grid, save_png
from ganime.metrics import compute
from ganime.metrics.attribute_net import load_classifier, predict
from ganime.models.grown import trunk_config

sys.path.insert(0, str(Path(__file__).parent))
from directions_table import cpu_model, main_labels

FACES = Path(__file__).resolve().parents[1] / "src" / "ganime" / "assets" / "dicebear-faces-64.npz"


def trunk_generator(gen: LoadedGenerator) -> LoadedGenerator:
    """The grown generator's 64 px trunk as a generator of its own."""
    return LoadedGenerator(gen.G.trunk, trunk_config(gen.model), f"{gen.source} (64 px trunk)", gen.device, gen.meta)


def agreement(clf, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(all four main attributes equal, mean per-attribute equality over the 9) between image sets a and b."""
    pa, pb = predict(clf, a)[1], predict(clf, b)[1]
    ma, mb = main_labels(clf, pa), main_labels(clf, pb)
    four = np.all([ma[k] == mb[k] for k in ma], axis=0).mean()
    return float(four), float((pa == pb).mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", type=int, choices=(64, 128), default=128)
    ap.add_argument("--faces", type=int, default=50)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--seeds", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--grid", type=Path, help="write input | best seed | result rows for the first 8 faces")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = load_generator("pretrained")
    if args.resolution == 64:
        gen = trunk_generator(gen)
    with np.load(FACES) as data:
        images = data["images"]
    idx = np.random.default_rng(0).permutation(len(images))[: args.faces]
    inputs = np.stack([fit_picture(images[i], gen.resolution) for i in idx])
    results, seconds, cpu = [], [], []
    invert(gen, inputs[0], steps=2, seeds=8)  # warm-up (first-call allocations), not timed
    for face in inputs:
        t0, c0 = time.perf_counter(), time.process_time()
        results.append(invert(gen, face, steps=args.steps, seeds=args.seeds))
        seconds.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    recon = np.stack([r.image for r in results])
    start = gen.from_seeds([r.seed for r in results])
    rand = gen.from_seeds(list(range(10_000, 10_000 + args.faces)))
    clf = load_classifier()

    def err(x: np.ndarray) -> float:
        return float(np.abs(x.astype(np.float32) - inputs.astype(np.float32)).mean())

    rows = [("search + refine (`invert`)", recon), ("best seed alone", start), ("random seed", rand)]
    print(f"| {args.resolution} px, {args.faces} faces | pixel error (/255) | main 4 attributes agree | "
          "attributes agree (mean of 9) | SWD x 1e3 |")
    print("|---|---|---|---|---|")
    for name, faces in rows:
        four, nine = agreement(clf, inputs, faces)
        swd = compute("swd", inputs, faces, seed=0)["swd"]
        print(f"| {name} | {err(faces):.1f} | {four:.0%} | {nine:.0%} | {swd:.1f} |")
    losses = np.array([[r.start_loss, r.loss] for r in results])
    print(f"\nloss (pixel + feature + shell) mean {losses[:, 0].mean():.3f} at the best seed -> {losses[:, 1].mean():.3f}; "
          f"refined better than its start on {int((losses[:, 1] < losses[:, 0]).sum())} of {len(results)}")
    print(f"seconds per picture: median {np.median(seconds):.1f}, slowest {max(seconds):.1f}; CPU seconds (all "
          f"threads) median {np.median(cpu):.1f}; load average {os.getloadavg()[0]:.1f} at the end "
          f"({args.seeds} seeds, {args.steps} steps; {cpu_model()}, {args.threads} threads, torch {torch.__version__})")
    if args.grid:
        k = min(8, len(inputs))
        tiles = np.stack([x for i in range(k) for x in (inputs[i], start[i], recon[i])])
        print(f"wrote {save_png(make_grid(tiles, nrow=6), args.grid)} (rows of 2 faces: input, best seed, result)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
