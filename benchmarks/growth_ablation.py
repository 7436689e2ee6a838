"""Growth ablation: recipes at equal CPU time on data sets no recipe was tuned on, two runs at a time on one thread each.

    python benchmarks/growth_ablation.py --data data/lorelei-64.npz,data/notionists-64.npz,data/shapes-64.npz,emoji \
        --cpu-minutes 5 --out runs/growth
    python benchmarks/growth_ablation.py --doc docs/quality.md runs/growth/*-5min runs/growth/*-15min

Data: `python scripts/build_faces_dataset.py --style lorelei --count 5000 --out data/lorelei-64.npz` (and
notionists, shapes; DiceBear's CC0 styles, never `micah` or `bigSmile`, kept for independent checks) plus the
shipped emoji. Equal CPU time: each job first times a few steps of each stage of its recipe on one thread (the
growth planner's probe, training/growth.py, timed in process CPU time), then trains for the images those speeds allow in --cpu-minutes on
one thread (a growing recipe: with the grow points its planner makes for that budget). So a row's budget does not
depend on what else the machine runs while it trains; probe_img_per_s in results.json is what the probe measured
(the table's img/s and seconds are wall time, which other work on the machine slows). Each run is
scored as in recipe_ablation.py (SWD x 1e3, P/R, near-copies; the floor is the swd metric's own: other reals) and its
64 seeds are kept as OUT/<data>-<M>min/<row>/grid.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import recipe_ablation as ra

from ganime.config import override, preset, validate
from ganime.data.dataset import load_dataset
from ganime.device import cpu_model, set_threads
from ganime.eval_report import evaluate
from ganime.training import autotune, growth
from ganime.training.trainer import Trainer

# how a folder's floor was made: n other reals against the n scored ones at the full count (recipe_ablation.floor);
# a folder whose floor was made otherwise (older versions read it at half the count) is measured again
FLOOR_METHOD = "other-reals-full-count"

# name: (changes to a preset, what the row tests). The default (`grow`) is `grow16-last70`.
ROWS: dict[str, tuple[dict, str]] = {
    "modern": ({"preset": "modern"}, "the fixed 64 px `modern` DCGAN: the default before growing, and what the default trains at 64 px from 15 minutes on"),
    "grow16": ({"preset": "grow"}, "the `grow` preset as it stands (the same as grow16-last70)"),
    "grow16-gain1": ({"preset": "grow", "model.gain_scale": 1.0, "growth.final_share": 0.5},
                     "16 -> 32 -> 64 px, 25/25/50 % of the time, skip gains at Adam's own learning rate (the first `grow`)"),
    "grow16-gain10": ({"preset": "grow", "model.gain_scale": 10.0, "growth.final_share": 0.5},
                      "16 -> 32 -> 64 px, 25/25/50 % of the time, skip gains learning 10x faster"),
    "grow16-last70": ({"preset": "grow", "growth.final_share": 0.7},
                      "grow16-gain10 with 70 % of the time at 64 px (not 50 %): the default"),
    "grow16-images": ({"preset": "grow", "growth.split": "images", "growth.final_share": 0.5},
                      "grow16-gain10 with every stage seeing the same images (ProGAN) instead of 25/25/50 % of the time"),
    "grow32-gain10": ({"preset": "grow", "growth.start": 32, "model.levels": 1, "model.gain_scale": 10.0,
                       "growth.final_share": 0.5}, "grow16-gain10 from 32 px: 32 -> 64 px"),
    "grow16-mbstd": ({"preset": "grow", "model.mbstd": 4, "growth.final_share": 0.5},
                     "grow16-gain10 with minibatch std (groups of 4) in D"),
    "grow16-gain10-ada": ({"preset": "grow", "model.gain_scale": 10.0, "loss.ada_target": 0.6, "growth.final_share": 0.5},
                          "grow16-gain10 with ADA's adaptive augmentation probability (target 0.6) for DiffAugment's p = 1"),
    "grow16-ada": ({"preset": "grow", "loss.ada_target": 0.6},
                   "the default (grow16-last70) with ADA's adaptive augmentation probability (target 0.6)"),
    "grow16-r1x10": ({"preset": "grow", "loss.r1_gamma": 0.1}, "the default (grow16-last70) with R1 gamma 0.1 (not 0.01)"),
    "grow16-lrramp": ({"preset": "grow", "growth.lr_rampup": 2.0},
                      "the default (grow16-last70) with both learning rates ramping up from 0 over 2 kimg after each grow"),
    "grow16-nocolor": ({"preset": "grow", "loss.diffaugment": "translation,cutout"},
                       "the default (grow16-last70) without DiffAugment's colour ops (brightness, saturation, contrast)"),
    "grow16-hflip": ({"preset": "grow", "data.hflip": True},
                     "the default (grow16-last70) with each real image mirrored left-right with probability 1/2"),
    "grow16-r3gan": ({"preset": "grow", "loss.loss": "rpgan", "loss.r2_gamma": 0.01},
                     "the default (grow16-last70) with R3GAN's loss: relativistic pairing with R1 and R2 (Huang et al. 2024)"),
    "grow16-ema0": ({"preset": "grow", "loss.ema_rampup": 0.0},
                    "the default (grow16-last70) without EMA ramp-up (a fixed 0.999 EMA from step 0)"),
    "grow16-w48": ({"preset": "grow", "model.g_width": 48, "model.d_width": 48}, "the default (grow16-last70) 1.5x as wide"),
    "tutorial-small": ({"preset": "tutorial-small"}, "the 32 px DCGAN of the old first command"),
}


def job_config(row: dict, data: str, cpu_minutes: float) -> tuple[dict, dict]:
    """(changes for recipe_ablation.run_one, what was measured): budget in images from a one-thread speed probe."""
    changes = dict(row)
    base = preset(changes.pop("preset"))
    cfg = validate(override(base, epochs=0, threads=1, minutes=cpu_minutes, **{"data.path": data}, **changes))
    set_threads(1)
    ds = load_dataset(data, cfg.model.resolution, cfg.model.channels, cfg.data.background)
    cpu = torch.device("cpu")
    runtime, _ = autotune.resolve_runtime(cfg, ds, cpu, 1)  # what the run will use (cached per machine)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, ds, cpu, Path(tmp), runtime)
        speeds = growth.measure_speeds(trainer, steps=6, clock=time.process_time)  # CPU time: load-independent
    if cfg.growth.start:
        points = growth.plan_points(cfg, speeds, trainer.loader.steps_per_epoch)
        shares = growth.stage_shares(cfg.growth, speeds)
        kimg = sum(s * cpu_minutes * 60 * v for s, v in zip(shares, speeds)) / 1000
        changes["growth.kimg"] = points
    else:
        kimg = cpu_minutes * 60 * speeds[0] / 1000
    probe = {"kimg_budget": round(kimg, 1), "probe_img_per_s": speeds, "probe_runtime": runtime.label()}
    return {"preset": row["preset"], **changes}, probe


def run_job(name: str, row: dict, data: str, cpu_minutes: float, root: Path, n: int) -> dict:
    changes, probe = job_config(row, data, cpu_minutes)
    out = ra.run_one(name, changes, data, {"kimg": probe["kimg_budget"]}, n, root, threads=1)
    return {**out, **probe, "cpu_minutes": cpu_minutes}


def folder(root: Path, data: str, minutes: float) -> Path:
    return root / f"{Path(data).stem.removesuffix('-64')}-{minutes:g}min"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="", help="comma list of data sets (paths or built-in names)")
    ap.add_argument("--cpu-minutes", default="5", help="comma list of budgets in one-thread minutes")
    ap.add_argument("--only", default="", help="comma list of rows (default: all)")
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs/growth"))
    ap.add_argument("--doc", type=Path, default=None, help="write the 'Growing' section of this Markdown file")
    ap.add_argument("--rescore", action="store_true", help="re-measure the runs in FOLDERS with the current swd metric")
    ap.add_argument("folders", nargs="*", type=Path)
    args = ap.parse_args()
    if args.doc:
        write_doc(args.doc, args.folders)
        return
    if args.rescore:
        for root in args.folders:
            rescore(root)
        return
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    rows = [r for r in args.only.split(",") if r] or list(ROWS)
    jobs = []
    for minutes in [float(m) for m in args.cpu_minutes.split(",")]:
        for data in [d for d in args.data.split(",") if d]:
            dest = folder(args.out, data, minutes)
            dest.mkdir(parents=True, exist_ok=True)
            res = ra.read_results(dest) if (dest / "results.json").is_file() else {"runs": []}
            res.update(data=data, budget={"cpu_minutes": minutes}, n=args.n, cpu=cpu_model(), torch=torch.__version__,
                       capability=torch.backends.cpu.get_cpu_capability())
            for r in ("64", "32") if "tutorial-small" in rows else ("64",):
                if r not in res.setdefault("floors", {}):
                    res["floors"][r] = ra.floor(data, args.n, int(r)) | {"method": FLOOR_METHOD}
            (dest / "results.json").write_text(json.dumps(res, indent=2))
            done = {r["name"] for r in res["runs"]}
            jobs += [(name, data, minutes, dest) for name in rows if name not in done]
    jobs.sort(key=lambda j: (j[2], rows.index(j[0])))  # each budget's first rows on every set first
    with ProcessPoolExecutor(args.workers) as pool:
        futures = {pool.submit(run_job, name, ROWS[name][0], data, m, dest, args.n): dest for name, data, m, dest in jobs}
        for fut in as_completed(futures):
            dest = futures[fut]
            row = fut.result()
            res = ra.read_results(dest)
            res["runs"].append(row)
            (dest / "results.json").write_text(json.dumps(res, indent=2))
            print(dest.name, json.dumps(row), flush=True)


def rescore(root: Path) -> None:
    """Measure every finished run in `root` again with the current swd metric (and its floor), as `run_one` did."""
    res = ra.read_results(root)
    for run in res["runs"]:
        report = evaluate(root / run["name"], data=res["data"], metrics="swd", n=res["n"], seed=0, write=False)
        swd = {k: float(v) for k, v in report.metrics.items() if k.startswith("swd") and not isinstance(v, str)}
        print(root.name, run["name"], f"swd {run['swd']:.1f} -> {swd['swd']:.1f}", flush=True)
        run.update({k: v for k, v in swd.items() if not k.startswith("swd_real")})
    (root / "results.json").write_text(json.dumps(res, indent=2))


def summary(roots: list[Path]) -> list[str]:
    """One table over the folders: SWD / its floor for each row and set (lower is better; 1 = as good as real)."""
    results = {root: ra.read_results(root) for root in sorted(roots)}
    names = [n for n in ROWS if any(r["name"] == n for res in results.values() for r in res["runs"])]
    head = [f"{Path(res['data']).stem.removesuffix('-64')} ({res['budget']['cpu_minutes']:g} min)" for res in results.values()]
    lines = ["| row | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    for name in names:
        cells = []
        for res in results.values():
            run = next((r for r in res["runs"] if r["name"] == name), None)
            fl = res["floors"][str(run.get("resolution", 64))]["swd"] if run else 0
            cells.append(f"{run['swd']:.1f} ({run['swd'] / fl:.1f}x), {run['kimg']:.0f} kimg" if run else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    floors = [f"{res['floors']['64']['swd']:.1f}" for res in results.values()]
    lines.append("| real vs real (floor) | " + " | ".join(floors) + " |")
    legend = [f"- `{n}`: {ROWS[n][1]}" for n in names]
    return ["", "SWD x 1e3 (its ratio to the floor), images seen:", "", *lines, "", "The rows:", "", *legend]


def write_doc(doc: Path, roots: list[Path]) -> None:
    """The generated part of docs/quality.md's 'Growing' section: a table and a grid sheet per folder."""
    parts = []
    for root in sorted(roots):
        res = ra.read_results(root)
        for size, fl in res["floors"].items():  # the swd metric's own floor (other reals), where made before it
            if fl.get("method") != FLOOR_METHOD:
                res["floors"][size] = ra.floor(res["data"], res["n"], int(size)) | {"method": FLOOR_METHOD}
                (root / "results.json").write_text(json.dumps(res, indent=2))
        sheet = ra.grids_sheet(root, res, doc.parent / "images" / f"growth-{root.name}.png")
        parts += [
            "", f"### {res['data']}: {res['budget']['cpu_minutes']:g} CPU-minutes per recipe", "",
            f"Machine: {res['cpu']} ({res['capability']}), torch {res['torch']}, one thread per run; n {res['n']}.",
            "", ra.table(res), "", f"![first 16 seeds of each recipe](images/{sheet.name})",
        ]
    body = "\n".join([*summary(roots), *parts]) + "\n"
    begin, end = "<!-- growth:begin -->", "<!-- growth:end -->"
    old = doc.read_text()
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        doc.write_text(f"{head}{begin}\n{body}{end}{rest.split(end, 1)[1]}")
    else:
        doc.write_text(f"{old.rstrip()}\n\n## Growing\n\n{begin}\n{body}{end}\n")


if __name__ == "__main__":
    main()
