"""Do the named directions do what their names say? Measured with the faces attribute classifier.

    python benchmarks/directions_table.py [SOURCE] [--seeds 1000] [--amounts 1,2,3] [--raw] [--threads 2]

For each named direction of SOURCE (default: the shipped generator and its shipped directions) and each amount a,
over seeds 0..N-1 (not the seeds the directions were fitted on, which start at 1,000,000):

- target: how often the classifier's label is the direction's (e.g. hair colour = red) at amount a; the 0 column
  is how often it already is;
- kept: how often all the OTHER main attributes stay what they were at amount 0 (hair colour, skin colour, long
  vs short hair, glasses; the direction's own attribute left out).

`--random K` adds a reference row: `kept` along K random unit directions (seeded), what any move of that size
costs the other attributes (their labels flip near the classifier's boundaries).

`--raw` also fits the directions without the conditional step (on the same 10,000 fitting faces) and reports
their `kept` at +2, to show what the conditioning buys. Prints a markdown table (docs/directions.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import torch

from ganime.direction_fit import attribute_directions, face_labels
from ganime.directions import Directions
from ganime.generate import load_generator
from ganime.metrics.attribute_net import load_classifier, predict

MAIN = ("hairColor", "skinColor", "hair", "glasses")  # what "kept" watches


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], check=False, capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


def main_labels(clf, pred: np.ndarray) -> dict[str, np.ndarray]:
    """The watched attributes as a person sees them: colour values, long vs short hair, glasses or not."""
    col = {n: i for i, n in enumerate(clf.names)}
    long = np.array([v.startswith("long") for v in clf.values[col["hair"]]])
    return {
        "hairColor": pred[:, col["hairColor"]],
        "skinColor": pred[:, col["skinColor"]],
        "hair": long[pred[:, col["hair"]]],
        "glasses": pred[:, col["glasses"]] != clf.values[col["glasses"]].index("none"),
    }


def measure(gen, clf, directions: Directions, seeds: int, amounts: list[float]) -> dict[str, dict]:
    z0 = gen.latents(list(range(seeds)))

    def preds(z: torch.Tensor) -> np.ndarray:
        return np.concatenate([predict(clf, gen.images(z[i : i + 500]))[1] for i in range(0, len(z), 500)])

    pred0 = preds(z0)
    base = main_labels(clf, pred0)
    out = {}
    for d in directions.entries:
        if d.kind != "named":
            continue
        row = {}
        for a in [0.0, *amounts]:
            pred = pred0 if a == 0 else preds(directions.apply(z0, {d.name: a}))
            lab = next(x for x in face_labels(clf.names, clf.values, pred) if x.direction.name == d.name)
            now = main_labels(clf, pred)
            own = lab.attribute
            same = np.ones(seeds, bool)
            for attr in MAIN:
                if attr != own:
                    same &= now[attr] == base[attr]
            row[a] = {"target": float(np.mean(lab.positive)), "kept": float(same.mean())}
        out[d.name] = row
    return out


def random_kept(gen, clf, seeds: int, amounts: list[float], k: int) -> dict[float, float]:
    """Mean fraction of faces whose four main attributes all stay, moving along k random unit directions."""
    z0 = gen.latents(list(range(seeds)))
    rng = np.random.default_rng(0)

    def labels(z: torch.Tensor) -> dict[str, np.ndarray]:
        pred = np.concatenate([predict(clf, gen.images(z[i : i + 500]))[1] for i in range(0, len(z), 500)])
        return main_labels(clf, pred)

    base = labels(z0)
    out = {}
    for a in amounts:
        kept = []
        for _ in range(k):
            d = torch.from_numpy(rng.standard_normal(gen.z_dim).astype(np.float32))
            now = labels(z0 + a * d / d.norm())
            kept.append(np.all([now[key] == base[key] for key in MAIN], axis=0).mean())
        out[a] = float(np.mean(kept))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", nargs="?", default="pretrained")
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--amounts", default="1,2,3")
    ap.add_argument("--raw", action="store_true", help="also measure unconditioned directions at +2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--random", type=int, default=0, help="K random unit directions as a reference row for `kept`")
    ap.add_argument("--only-random", action="store_true", help="measure only the --random reference row")
    ap.add_argument("--json", help="write the numbers here too")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    gen = load_generator(args.source)
    clf = load_classifier()
    amounts = [float(a) for a in args.amounts.split(",")]
    directions = gen.directions
    result = {} if args.only_random else measure(gen, clf, directions, args.seeds, amounts)
    raw = {}
    if args.raw:
        fitted = attribute_directions(gen, directions.info.get("named", {}).get("samples", 10_000), condition=False)
        fitted = fitted.select([n for n in fitted.names if n in result])
        raw = measure(gen, clf, fitted, args.seeds, [2.0])
    head = "| direction | target at 0 | " + " | ".join(f"target at +{a:g}" for a in amounts)
    head += " | " + " | ".join(f"others kept at +{a:g}" for a in amounts) + (" | kept at +2 unconditioned |" if raw else " |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, row in result.items():
        cells = [f"`{name}`", f"{row[0.0]['target']:.0%}"] + [f"{row[a]['target']:.0%}" for a in amounts]
        cells += [f"{row[a]['kept']:.0%}" for a in amounts]
        if raw:
            cells.append(f"{raw[name][2.0]['kept']:.0%}" if name in raw else "")
        lines.append("| " + " | ".join(cells) + " |")
    if args.random:
        kept = random_kept(gen, clf, args.seeds, amounts, args.random)
        cells = [f"random unit direction (mean of {args.random})", "", *[""] * len(amounts)]
        cells += [f"{kept[a]:.0%}" for a in amounts] + ([""] if raw else [])
        lines.append("| " + " | ".join(cells) + " |")
    print("\n".join(lines))
    took = time.perf_counter() - t0
    print(f"\n{args.seeds} seeds, {cpu_model()}, {args.threads} threads, torch {torch.__version__}: {took:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"directions": result, "raw": raw, "cpu": cpu_model(), "seconds": took}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
