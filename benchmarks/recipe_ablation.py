"""Recipe ablation: candidate recipes trained on the same data for the same budget, each scored the same way.

    python benchmarks/recipe_ablation.py --data faces --kimg 60 --out runs/ablation
    python benchmarks/recipe_ablation.py --data emoji --kimg 60 --only modern,modern-mbstd --out runs/ablation-emoji
    python benchmarks/recipe_ablation.py --report runs/ablation        # redraw the table from results.json

Each candidate is the `modern` preset with a few fields changed (CANDIDATES below); all train one after the
other in this process for the same number of real images (--kimg: equal work for candidates of equal step cost;
the table states each run's seconds and images/s so costlier candidates show it), then the EMA generator
(what `ganime generate` uses) is scored on --n images against --n real ones with `ganime.evaluate`: SWD
(x 1e3), precision/recall (weights-free features unless Inception weights are present) and the near-copy rate
(nn). The floor row is SWD and P/R between two disjoint halves of the real data at the same n: no generator can
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
from ganime.evaluate import evaluate, real_subset
from ganime.generate import load_generator, make_grid, save_png
from ganime.metrics import compute
from ganime.training.device import cpu_model

# name -> changes to the modern preset
CANDIDATES: dict[str, dict] = {
    "modern": {},
    "modern-mbstd": {"model.mbstd": 4},
    "r3gan": {"loss.loss": "rpgan", "loss.r2_gamma": 0.01},
    "r3gan-mbstd": {"loss.loss": "rpgan", "loss.r2_gamma": 0.01, "model.mbstd": 4},
    "modern-lr2x": {"optim.lr_g": 2e-4, "optim.lr_d": 8e-4},
    "modern-b32": {"batch_size": 32},
    "modern-no-cutout": {"loss.diffaugment": "color,translation"},
    "modern-g48": {"model.g_width": 48},
}
METRICS = "swd,pr,nn"


def floor(data: str, n: int) -> dict:
    """SWD and P/R between two disjoint halves of the real images (n each where the data allows)."""
    ds = load_dataset(data, 64)
    images = real_subset(ds.images, min(2 * n, len(ds)), seed=1)
    half = len(images) // 2
    values = compute("swd,pr", images[:half], images[half : 2 * half], seed=0)
    return {k: float(v) for k, v in values.items() if not isinstance(v, str)} | {"n": half}


def run_one(name: str, changes: dict, data: str, kimg: float, n: int, root: Path, threads: int) -> dict:
    cfg = override(preset("modern"), kimg=kimg, epochs=0, threads=threads, **{"data.path": data}, **changes)
    t0 = time.perf_counter()
    res = ganime.train(cfg, root / name, progress=False)
    wall = time.perf_counter() - t0
    report = evaluate(res.checkpoint, data=data, metrics=METRICS, n=n, seed=0, write=False)
    gen = load_generator(res.checkpoint)
    save_png(make_grid(gen.from_seeds(list(range(64))), nrow=8), root / name / "grid.png")
    runtime = json.loads((res.run_dir / "runtime.json").read_text())
    m = {k: float(v) for k, v in report.metrics.items() if not isinstance(v, str)}
    return {
        "name": name, "changes": changes, "steps": res.step, "kimg": round(res.images_seen / 1000, 1),
        "train_seconds": round(res.seconds, 1), "wall_seconds": round(wall, 1),
        "img_per_s": round(res.images_seen / max(res.seconds, 1e-9), 1),
        "precision": runtime.get("precision"), "channels_last": runtime.get("channels_last"), **m,
    }


def table(results: dict) -> str:
    fl = results["floor"]
    lines = [
        "| recipe | changes | kimg | train s | img/s | SWD | SWD / floor | precision | recall | near-copies |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        changes = ", ".join(f"{k}={v}" for k, v in r["changes"].items()) or "(the preset)"
        lines.append(
            f"| {r['name']} | {changes} | {r['kimg']} | {r['train_seconds']:.0f} | {r['img_per_s']:.0f} | "
            f"{r['swd']:.1f} | {r['swd'] / fl['swd']:.2f} | {r.get('precision', float('nan')):.3f} | "
            f"{r.get('recall', float('nan')):.3f} | {100 * r.get('nn_copy_fraction', float('nan')):.2f} % |"
        )
    lines.append(
        f"| real vs real (floor) | two halves of the data, {fl['n']} each | | | | {fl['swd']:.1f} | 1.00 | "
        f"{fl.get('precision', float('nan')):.3f} | {fl.get('recall', float('nan')):.3f} | |"
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="faces", help="built-in name or path (default: faces)")
    ap.add_argument("--kimg", type=float, default=60.0, help="thousands of real images per candidate")
    ap.add_argument("--n", type=int, default=2048, help="generated and real images per evaluation")
    ap.add_argument("--only", default="", help="comma list of candidates (default: all)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/ablation"))
    ap.add_argument("--report", type=Path, default=None, help="print the table of an earlier OUT and exit")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    if args.report:
        print(table(json.loads((args.report / "results.json").read_text())))
        return
    names = [s for s in args.only.split(",") if s] or list(CANDIDATES)
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown:
        sys.exit(f"error: unknown candidates {unknown}; known: {', '.join(CANDIDATES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {"runs": []}
    results.update(
        data=args.data, kimg=args.kimg, n=args.n, cpu=cpu_model(), torch=torch.__version__,
        capability=torch.backends.cpu.get_cpu_capability(),
    )
    if "floor" not in results:
        results["floor"] = floor(args.data, args.n)
    done = {r["name"] for r in results["runs"]}
    for name in names:
        if name in done:
            continue
        row = run_one(name, CANDIDATES[name], args.data, args.kimg, args.n, args.out, args.threads)
        results["runs"].append(row)
        path.write_text(json.dumps(results, indent=2))
        print(json.dumps(row), flush=True)
    print(table(results))
    print(f"\n{results['cpu']} ({results['capability']}), torch {results['torch']}, data {args.data}, "
          f"{args.kimg:g} kimg each, n {args.n}; numpy {np.__version__}")


if __name__ == "__main__":
    main()
