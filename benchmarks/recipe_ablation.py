"""Recipe ablation: candidate recipes trained on the same data for the same budget, each scored the same way.

    python benchmarks/recipe_ablation.py --data faces --kimg 60 --out runs/ablation
    python benchmarks/recipe_ablation.py --data emoji --kimg 60 --only modern,modern-mbstd --out runs/ablation-emoji
    python benchmarks/recipe_ablation.py --report runs/ablation        # redraw the table from results.json
    python benchmarks/recipe_ablation.py --doc docs/quality.md runs/ablation runs/ablation-emoji

Each candidate is the `modern` preset with a few fields changed (CANDIDATES below); all train one after the
other in this process for the same number of real images (--kimg: equal work for candidates of equal step cost;
the table states each run's seconds and images/s so costlier candidates show it), then the EMA generator
(what `ganime generate` uses) is scored on --n images against --n real ones with `ganime.evaluate`: SWD
(x 1e3), precision/recall (weights-free features unless Inception weights are present) and the near-copy rate
(nn). The floor row is SWD and P/R between those n reals and n others (the swd metric's `swd_real`): no generator can
be expected to beat it. Writes OUT/results.json, OUT/<candidate>/grid.png and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

import ganime
from ganime.config import override, preset
from ganime.data.dataset import load_dataset
from ganime.device import cpu_model
from ganime.eval_report import evaluate, real_subsets
from ganime.generate import load_generator
from ganime.io import make_grid, save_png
from ganime.metrics import compute
from ganime.metrics.registry import split_halves

# name -> changes to the modern preset. "modern" is the preset as it was before this ablation (TTUR 1e-4/4e-4);
# the preset now has modern-lr2x's rates, so every row keeps meaning what it measured.
OLD_TTUR = {"optim.lr_g": 1e-4, "optim.lr_d": 4e-4}
CANDIDATES: dict[str, dict] = {
    "modern": OLD_TTUR,
    "modern-mbstd": {**OLD_TTUR, "model.mbstd": 4},
    "r3gan": {**OLD_TTUR, "loss.loss": "rpgan", "loss.r2_gamma": 0.01},
    "r3gan-mbstd": {**OLD_TTUR, "loss.loss": "rpgan", "loss.r2_gamma": 0.01, "model.mbstd": 4},
    "modern-lr2x": {"optim.lr_g": 2e-4, "optim.lr_d": 8e-4},
    # the preset as it is now (its rates) with R3GAN's loss and R2: the growth ablation's 60-minute row
    "modern-rpgan": {"optim.lr_g": 2e-4, "optim.lr_d": 8e-4, "loss.loss": "rpgan", "loss.r2_gamma": 0.01},
    "modern-b32": {**OLD_TTUR, "batch_size": 32},
    "modern-no-cutout": {**OLD_TTUR, "loss.diffaugment": "color,translation"},
    "modern-lr2x-no-cutout": {"optim.lr_g": 2e-4, "optim.lr_d": 8e-4, "loss.diffaugment": "color,translation"},
    "modern-g48": {**OLD_TTUR, "model.g_width": 48},
    "modern-32": {**OLD_TTUR, "model.resolution": 32},
    "tutorial-small": {"preset": "tutorial-small"},  # another preset as the base: the old first command
}
METRICS = "swd,pr,nn"


def floor(data: str, n: int, resolution: int = 64) -> dict:
    """SWD and P/R of n other real images against the n reals every run is scored with (`ganime eval`'s seed-0
    subset): the swd metric's own floor (`swd_real`, metrics/swd.py), one definition for every table and card."""
    ds = load_dataset(data, resolution)
    real, other = real_subsets(ds.images, n, seed=0)
    if other is None:  # fewer than 2n images: two random halves of them, as the metric splits them
        halves = split_halves(len(real), len(real), seed=0)
        real, other = real[halves.reference], real[halves.real]
    # `other` in both places: the swd metric scores the "fakes" against `real` at the full count (without
    # real_other it would split both in halves and read a floor at half the count, higher than the runs')
    values = compute("swd,pr", real, other, seed=0, real_other=other)
    return {k: float(v) for k, v in values.items() if not isinstance(v, str)} | {"n": len(other)}


def run_one(
    name: str, changes: dict, data: str, budget: dict, n: int, root: Path, threads: int, seed: int = 0
) -> dict:
    changes = dict(changes)
    base = preset(changes.pop("preset", "modern"))
    cfg = override(base, epochs=0, threads=threads, seed=seed, **budget, **{"data.path": data}, **changes)
    t0 = time.perf_counter()
    res = ganime.train(cfg, root / name, progress=False)
    wall = time.perf_counter() - t0
    report = evaluate(res.checkpoint, data=data, metrics=METRICS, n=n, seed=0, write=False)
    gen = load_generator(res.checkpoint)
    save_png(make_grid(gen.from_seeds(list(range(64))), nrow=8), root / name / "grid.png")
    runtime = json.loads((res.run_dir / "runtime.json").read_text())
    m = {k: float(v) for k, v in report.metrics.items() if not isinstance(v, str)}
    return {
        "name": name, "seed": seed, "changes": changes, "preset": cfg.preset, "resolution": cfg.model.resolution, "steps": res.step, "kimg": round(res.images_seen / 1000, 1),
        "train_seconds": round(res.seconds, 1), "wall_seconds": round(wall, 1),
        "img_per_s": round(res.images_seen / max(res.seconds, 1e-9), 1),
        "dtype": runtime.get("precision"), "channels_last": runtime.get("channels_last"), **m,
    }


def read_results(root: Path) -> dict:
    """OUT/results.json."""
    return json.loads((root / "results.json").read_text())


def table(results: dict) -> str:
    lines = [
        "| recipe | changes | kimg | train s | img/s | SWD | SWD / floor | precision | recall | near-copies |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        fl = results["floors"][str(r.get("resolution", 64))]
        changes = ", ".join(f"{k}={v}" for k, v in r["changes"].items()) or "(the preset)"
        if r.get("preset", "modern") != "modern":
            changes = f"preset {r['preset']}" + (f", {changes}" if r["changes"] else "")
        lines.append(
            f"| {r['name']} | {changes} | {r['kimg']} | {r['train_seconds']:.0f} | {r['img_per_s']:.0f} | "
            f"{r['swd']:.1f} | {r['swd'] / fl['swd']:.2f} | {r.get('precision', float('nan')):.3f} | "
            f"{r.get('recall', float('nan')):.3f} | {100 * r.get('nn_copy_fraction', float('nan')):.2f} % |"
        )
    for res, fl in sorted(results["floors"].items(), key=lambda kv: -int(kv[0])):
        lines.append(
            f"| real vs real (floor, {res} px) | {fl['n']} other reals vs the scored ones | | | | {fl['swd']:.1f} | 1.00 | "
            f"{fl.get('precision', float('nan')):.3f} | {fl.get('recall', float('nan')):.3f} | |"
        )
    return "\n".join(lines)


def grids_sheet(root: Path, results: dict, out: Path) -> Path:
    """The candidates' grids side by side (the first 16 seeds of each, 4x4), labelled, as one PNG."""
    from PIL import Image, ImageDraw

    tiles = []
    for r in results["runs"]:
        grid = Image.open(root / r["name"] / "grid.png").convert("RGB")
        side = 4 * (r.get("resolution", 64) + 2) + 2  # make_grid: 2 px padding
        tile = grid.crop((0, 0, side, side))
        tile = tile.resize((4 * 66 + 2, 4 * 66 + 2), Image.NEAREST)  # 32 px runs shown at the 64 px size
        canvas = Image.new("RGB", (tile.width, tile.height + 18), "white")
        canvas.paste(tile, (0, 18))
        ImageDraw.Draw(canvas).text((4, 3), r["name"], fill="black")
        tiles.append(canvas)
    sheet = Image.new("RGB", (sum(t.width for t in tiles) + 8 * (len(tiles) - 1), tiles[0].height), "white")
    x = 0
    for t in tiles:
        sheet.paste(t, (x, 0))
        x += t.width + 8
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def describe(budget: dict) -> str:
    return f"{budget['minutes']:g} minutes" if "minutes" in budget else f"{budget['kimg']:g} kimg"


def flags(budget: dict) -> str:
    return f"--minutes {budget['minutes']:g}" if "minutes" in budget else f"--kimg {budget['kimg']:g}"


def write_doc(doc: Path, roots: list[Path]) -> None:
    """docs/quality.md: one section per ablation folder (table, machine, grids sheet in docs/images/)."""
    parts = [
        "# Image quality: the recipe ablation",
        "",
        "*Written by `python benchmarks/recipe_ablation.py --doc docs/quality.md " + " ".join(map(str, roots))
        + "`; the runs themselves by the commands below. What the metrics mean: [metrics.md](metrics.md).*",
    ]
    for root in roots:
        results = read_results(root)
        sheet = grids_sheet(root, results, doc.parent / "images" / f"{root.name}.png")
        names = ",".join(r["name"] for r in results["runs"])
        parts += [
            "",
            f"## {results['data']}: {describe(results['budget'])} per recipe",
            "",
            (
                f"    python benchmarks/recipe_ablation.py --data {results['data']} {flags(results['budget'])} "
                f"--n {results['n']} --only {names} --out {root}"
            ),
            "",
            f"Machine: {results['cpu']} ({results['capability']}), torch {results['torch']}. {results.get('note', '')}",
            "",
            table(results),
            "",
            f"![first 16 seeds of each recipe](images/{sheet.name})",
        ]
    body = "\n".join(parts[2:]) + "\n"
    begin, end = "<!-- ablation:begin -->", "<!-- ablation:end -->"
    old = doc.read_text() if doc.is_file() else ""
    if begin in old and end in old:  # keep the hand-written text around the generated part
        head, rest = old.split(begin, 1)
        doc.write_text(f"{head}{begin}\n{body}{end}{rest.split(end, 1)[1]}")
    else:
        doc.write_text(f"{parts[0]}\n\n{begin}\n{body}{end}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="faces", help="built-in name or path (default: faces)")
    ap.add_argument("--kimg", type=float, default=60.0, help="thousands of real images per candidate")
    ap.add_argument("--minutes", type=float, default=0.0, help="training minutes per candidate instead of --kimg")
    ap.add_argument("--n", type=int, default=2048, help="generated and real images per evaluation")
    ap.add_argument("--only", default="", help="comma list of candidates (default: all)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0, help="training seed; rows of other seeds are named NAME@sN")
    ap.add_argument("--out", type=Path, default=Path("runs/ablation"))
    ap.add_argument("--report", type=Path, default=None, help="print the table of an earlier OUT and exit")
    ap.add_argument("--doc", type=Path, default=None, help="write this Markdown file from the folders given")
    ap.add_argument("folders", nargs="*", type=Path, help="with --doc: ablation output folders")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    if args.doc:
        write_doc(args.doc, args.folders)
        return
    if args.report:
        print(table(read_results(args.report)))
        return
    names = [s for s in args.only.split(",") if s] or list(CANDIDATES)
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown:
        sys.exit(f"error: unknown candidates {unknown}; known: {', '.join(CANDIDATES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    results = read_results(args.out) if path.is_file() else {"runs": []}
    budget = {"minutes": args.minutes} if args.minutes else {"kimg": args.kimg}
    results.update(
        data=args.data, budget=budget, n=args.n, cpu=cpu_model(), torch=torch.__version__,
        capability=torch.backends.cpu.get_cpu_capability(),
    )
    floors = results.setdefault("floors", {})
    done = {r["name"] for r in results["runs"]}
    for name in names:
        row_name = f"{name}@s{args.seed}" if args.seed else name
        if row_name in done:
            continue
        res = str(CANDIDATES[name].get("model.resolution", 64))
        if res not in floors:
            floors[res] = floor(args.data, args.n, int(res))
        row = run_one(row_name, CANDIDATES[name], args.data, budget, args.n, args.out, args.threads, args.seed)
        results["runs"].append(row)
        path.write_text(json.dumps(results, indent=2))
        print(json.dumps(row), flush=True)
    print(table(results))
    print(f"\n{results['cpu']} ({results['capability']}), torch {results['torch']}, data {args.data}, "
          f"{budget} each, n {args.n}; numpy {np.__version__}")


if __name__ == "__main__":
    main()
