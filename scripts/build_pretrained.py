"""Write the shipped pretrained generator and its model card from a run trained on the faces set.

    python scripts/build_faces_dataset.py --size 128 --out data/faces-128.npz
    python -m ganime train --data data/faces-128.npz --kimg 1600 --threads 1 --out runs/shipped-grow --no-progress
    python -m ganime train --resume runs/shipped-grow --kimg 1600 --no-progress   # each later sitting
    python scripts/build_pretrained.py runs/shipped-grow --command "..." --command "..."

    python scripts/build_pretrained.py --directions-only   # only redo the directions of the shipped file
    python scripts/build_pretrained.py --card-only --comparison "..."   # only record why it ships, rewrite the doc

Writes src/ganime/assets/modern-faces-128.safetensors (the run's EMA generator in fp16, as `ganime generate`
samples it) and its JSON sidecar, which is the model card: data, licence, recipe, steps, images seen, training
time (of the run, each of its sittings, its growth plan, and the run it was grown from), CPU, and the quality of
the fp16 file itself measured by `ganime.evaluate` on the run's own data (SWD, precision/recall, near-copies,
the attribute metrics where available, and the specks on the white page around the faces) next to the
real-vs-real floor at the same n. The web page reads its title and subtitle from the card. Also writes docs/images/pretrained-grid.png and docs/pretrained.md from the card.
Refuses to write more than MAX_BYTES, and runs not trained on the faces set (the built-in one, or the same faces
rendered larger by scripts/build_faces_dataset.py).

Then its edit directions (ganime.directions: the attribute classifier's named directions and SeFa's), beside it
as modern-faces-128.directions.{safetensors,json}, named in the card with the ones left out and why, and their
preview sheet as docs/images/directions-preview.png (docs/directions.md measures them).

The sidecar's "model" records the latent scheme (how seeds become latents, ganime.latent): a run trained since
portable latents records "splitmix64-box-muller", so the shipped seeds show the same faces in torch, ONNX and
the browser page; `--latents` overrides it (e.g. to ship an older run's weights with portable seeds: its seeds
then show other faces than in that run's own sample grids).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from ganime.checkpoint import read_state, resolve_checkpoint
from ganime.direction_fit import compute_directions, preview_sheet
from ganime.directions import directions_path, save_directions
from ganime.errors import GanimeError
from ganime.eval_report import evaluate
from ganime.generate import load_generator, pretrained_path, save_generator
from ganime.io import atomic_write_json, make_grid, save_png
from ganime.latent import SCHEMES
from ganime.metrics import available_metrics
from ganime.metrics.attributes import check_faces_source

REPO = Path(__file__).resolve().parents[1]
MAX_BYTES = 10_000_000  # ships inside the wheel
N = 5000  # generated and real images per metric (the floor uses two other disjoint real sets of N)
GRID = REPO / "docs" / "images" / "pretrained-grid.png"
DOC = REPO / "docs" / "pretrained.md"
DATA = "faces"
PREVIEW = REPO / "docs" / "images" / "directions-preview.png"
DIRECTION_SAMPLES = 10_000  # faces labelled by the attribute classifier to fit the named directions
SEFA = 8  # label-free directions shipped
ATTRIBUTION = '"Adventurer" by Lisa Wischofsky, CC BY 4.0, via DiceBear'


def metric_names() -> str:
    return ",".join(m for m in ("swd", "pr", "nn", "attrs", "border") if m in available_metrics())


def faces_data(path: str, resolution: int) -> str:
    """What the card says of the data: the built-in faces set, or the same faces rendered at `resolution`."""
    if path == DATA:
        return "ganime's built-in faces set (src/ganime/assets/dicebear-faces-64.npz, 13,997 faces)"
    try:  # the attribute classifier's own test of a faces set: its labels, and 64 px or more
        check_faces_source(Path(path), resolution)
    except GanimeError:
        raise GanimeError(f"{path} is not the faces set; the shipped generator is trained on it (--data faces or a "
                          "file from scripts/build_faces_dataset.py)") from None
    return (f"ganime's built-in faces rendered at {resolution} px by `python scripts/build_faces_dataset.py --size "
            f"{resolution} --out {path}` (the same 13,997 faces as src/ganime/assets/dicebear-faces-64.npz)")


def run_training(run: Path, state: dict, runtime: dict) -> dict:
    """Steps, images and time of a run's training, and of the run it was grown from (recursively)."""
    cfg = state["config"]
    out = {
        "steps": state["step"],
        "images_seen": state["images_seen"],
        "kimg": round(state["images_seen"] / 1000, 1),
        "train_seconds": round(state["seconds"], 1),
        "cpu": runtime.get("cpu", ""),
        "threads": runtime.get("threads", 0),
        "precision": state.get("runtime", {}).get("precision", runtime.get("precision", "")),
        "channels_last": state.get("runtime", {}).get("channels_last", runtime.get("channels_last", "")),
        "torch": runtime.get("torch", torch.__version__),
    }
    for name, key in (("sittings.json", "sittings"), ("plan.json", "plan")):  # each part of a long training
        if (run / name).is_file():
            out[key] = json.loads((run / name).read_text())
    if cfg.get("grow_from"):
        low_run = Path(cfg["grow_from"])
        low_state = read_state(resolve_checkpoint(low_run))
        low_dir = low_run if low_run.is_dir() and (low_run / "runtime.json").is_file() else low_run.parent
        low_rt = json.loads((low_dir / "runtime.json").read_text()) if (low_dir / "runtime.json").is_file() else {}
        low = run_training(low_dir, low_state, low_rt)
        out["grown_from"] = {"resolution": low_state["config"]["model"]["resolution"], **low}
        out["total_train_seconds"] = round(out["train_seconds"] + low.get("total_train_seconds", low["train_seconds"]), 1)
    return out


def build(
    run: Path, out: Path, commands: list[str], n: int = N, latents: str | None = None, comparison: str = ""
) -> dict:
    ckpt = resolve_checkpoint(run)
    state = read_state(ckpt)
    cfg = state["config"]
    data = cfg["data"]["path"]
    resolution = cfg["model"]["resolution"]
    dataset = faces_data(data, resolution)
    runtime = json.loads((run / "runtime.json").read_text()) if (run / "runtime.json").is_file() else {}
    gen = load_generator(ckpt)  # G_ema with its re-estimated BatchNorm statistics
    if latents is not None:
        gen = dataclasses.replace(gen, model=dataclasses.replace(gen.model, latents=latents))
    names = metric_names()
    gen.meta = {
        **gen.meta,
        "data": cfg["data"],
        "card": {
            "title": "This face does not exist",
            "subtitle": f"cartoon faces drawn by a GAN trained on {ATTRIBUTION}",
            "dataset": dataset,
            "licence": (
                "weights: ganime's licence (MIT); training images: " + ATTRIBUTION
                + " -- credit it when you publish images from this generator"
            ),
            "recipe": {"preset": cfg["preset"], "config": cfg},
            "training": {"commands": commands, **run_training(run, state, runtime)},
            **({"comparison": comparison} if comparison else {}),
            "reproduce": f"ganime eval pretrained{'' if data == DATA else ' --data ' + data} --metrics {names} --n {n}",
        },
    }
    path = save_generator(gen, out, dtype=torch.float16)
    size = path.stat().st_size + path.with_suffix(".json").stat().st_size
    if size > MAX_BYTES:
        path.unlink()
        raise GanimeError(f"{path} would be {size / 1e6:.1f} MB; the shipped generator must stay under {MAX_BYTES / 1e6:.0f} MB")
    # quality of what ships: the fp16 file itself, as `ganime eval pretrained` measures it
    report = evaluate(path, data=data, metrics=names, n=n, seed=0, write=False)
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["card"]["quality"] = {
        **{k: round(float(v), 4) for k, v in report.metrics.items() if not isinstance(v, str)},
        "n_real": report.n_real,
        "n_fake": report.n_fake,
        "seed": report.seed,
        "feature_spaces": report.feature_spaces,
    }
    atomic_write_json(path.with_suffix(".json"), meta)
    GRID.parent.mkdir(parents=True, exist_ok=True)
    save_png(make_grid(load_generator(path).from_seeds(list(range(64))), nrow=8), GRID)
    meta = write_directions(path)
    DOC.write_text(card_markdown(meta, path))
    return {
        "path": str(path), "bytes": path.stat().st_size, "latents": meta["model"]["latents"],
        **meta["card"]["training"], **meta["card"]["quality"],
    }


def write_card(path: Path, comparison: str | None) -> dict:
    """Rewrite docs/pretrained.md from the card of the generator at `path`, first recording `comparison` (why it
    ships) in the card when given: no re-evaluation, no re-fit; returns the card's JSON."""
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    if comparison is not None:
        meta["card"]["comparison"] = comparison
        atomic_write_json(meta_path, meta)
    DOC.write_text(card_markdown(meta, path))
    return meta


def write_directions(path: Path, samples: int = DIRECTION_SAMPLES) -> dict:
    """The generator's directions beside it (all found, less the named ones `direction_fit.effective` leaves out),
    named in its card with the left-out ones and why; returns the card's JSON."""
    gen = load_generator(path)
    found = compute_directions(gen, samples, SEFA, attributes=True)  # less the named ones that fail their check
    out = save_directions(found, directions_path(path))
    PREVIEW.parent.mkdir(parents=True, exist_ok=True)
    save_palette_png(preview_sheet(gen, found, seed=7), PREVIEW)
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["card"]["directions"] = {
        "file": out.name,
        "names": {d.name: d.label for d in found.entries},
        "how": f"named: logistic boundaries in z of the faces attribute classifier's labels of {samples:,} sampled "
        f"faces, each made conditional on the other attributes (InterFaceGAN); sefa-0..{SEFA - 1}: SeFa, label-free",
        "dropped": found.info["named"]["checked"]["dropped"],
        "measured": "docs/directions.md (python benchmarks/directions_table.py)",
        "command": "python scripts/build_pretrained.py --directions-only",
    }
    atomic_write_json(path.with_suffix(".json"), meta)
    return meta


def save_palette_png(image: np.ndarray, path: Path) -> None:
    """A big sheet for the docs in 256 colours (octree, no dithering): a quarter of the RGB file's bytes, colours
    kept to the eye."""
    from PIL import Image

    sheet = Image.fromarray(image).quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    sheet.save(path, optimize=True)


def card_markdown(meta: dict, path: Path) -> str:
    """docs/pretrained.md from the card (the JSON stays the source of truth)."""
    c, t, q = meta["card"], meta["card"]["training"], meta["card"]["quality"]
    rows = [
        ("SWD x 1e3 (lower is better)", "swd", "swd_real"),
        ("precision", "precision", "precision_real"),
        ("recall", "recall", "recall_real"),
        ("near-copies of training images", "nn_copy_fraction", None),
        ("border band near-white (share of pixels)", "border_white", "border_white_real"),
        ("specks in the border band (per mille of its pixels)", "border_specks", "border_specks_real"),
        ("images with a speck in the border band", "border_specked", "border_specked_real"),
    ] + [(k, k, k + "_real") for k in sorted(q) if k.startswith(("attrs_", "fcd")) and not k.endswith("_real")]
    table = ["| metric | generator | real vs real (floor) |", "|---|---|---|"]
    for label, key, floor in rows:
        if key in q:
            table.append(f"| {label} | {q[key]:.4g} | {q[floor]:.4g} |" if floor in q else f"| {label} | {q[key]:.4g} | |")
    hours = t["train_seconds"] / 3600
    grown = t.get("grown_from")
    training = f"{t['steps']:,} steps, {t['images_seen']:,} images seen ({t['kimg']} kimg), {t['train_seconds']:.0f} s ({hours:.2f} h) of training"
    if grown:
        training = (
            f"{grown['resolution']} px first: {grown['steps']:,} steps, {grown['kimg']} kimg, {grown['train_seconds']:.0f} s "
            f"({grown['threads']} thread(s), {grown['precision']}); then grown to {meta['model']['resolution']} px: {training}; "
            f"{t['total_train_seconds'] / 3600:.2f} h in all"
        )
    plan = t.get("plan")
    if plan:
        stages = ", ".join(
            f"{st['resolution']} px from {st['start_kimg']:g} kimg" for st in plan["stages"]
        )
        training += f"; grew by the plan {stages} (split by {plan.get('split', 'time')})"
    parts = t.get("sittings") or []
    sittings = "; ".join(
        f"{i + 1}. {p['started'][:16].replace('T', ' ')} UTC: step {p['from_step']:,} -> "
        + (f"{p['to_step']:,} ({p['to_kimg']:g} kimg, {p['train_seconds'] / 60:.0f} min, {p['stopped']})" if "to_step" in p else "killed")
        + f", {p['cpu']}, {p['threads']} thread(s), {p['runtime']}"
        for i, p in enumerate(parts)
    )
    sitting_row = f"| sittings | {sittings} |\n" if sittings else ""
    return f"""# The pretrained generator: `{path.name}`

*Generated by `scripts/build_pretrained.py` from the model card `{path.with_suffix('.json').name}`; edit the
script, not this file.*

![64 faces from seeds 0-63](images/pretrained-grid.png)

Seeds 0-63 at truncation 1 (`ganime generate pretrained --n 64 --grid grid.png`).

| | |
|---|---|
| what | {c['title']}: {c['subtitle']} |
| data | {c['dataset']} |
| licence | {c['licence']} |
| recipe | `{c['recipe']['preset']}` ({meta['model']['arch']} {meta['model']['resolution']} px, G width {meta['model']['g_width']}, z {meta['model']['z_dim']}); the full config is in the card |
| training | {training} |
{sitting_row}| machine | {t['cpu']}, {t['threads']} thread(s), {t['precision']} / channels_last {t['channels_last']}, torch {t['torch']} |
| commands | {'; '.join(f'`{x}`' for x in t['commands'])} |
| file | fp16 safetensors, {path.stat().st_size / 1e6:.1f} MB |
| directions | {directions_line(c)} |

## Quality

`{c['reproduce']}` reproduces these numbers ({q['n_fake']:,} generated vs {q['n_real']:,} real images, seed
{q['seed']}); the floor compares two other disjoint sets of real images of the same size.

{chr(10).join(table)}

{('**Why this generator ships:** ' + c['comparison'] + chr(10) + chr(10)) if c.get('comparison') else ''}What each metric can and cannot tell: [metrics.md](metrics.md). The ablation that chose the recipe:
[quality.md](quality.md).
"""


def directions_line(card: dict) -> str:
    """The card's directions in one table cell (docs/directions.md has the details)."""
    d = card.get("directions")
    if not d:
        return "none"
    names = ", ".join(f"`{n}`" for n in d["names"])
    return f"{len(d['names'])} in `{d['file']}`: {names} ([directions.md](directions.md))"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, nargs="?", help="run dir trained on the faces set (--data faces or a rendered faces .npz)")
    ap.add_argument("--directions-only", action="store_true", help="only (re)write the directions of --out")
    ap.add_argument("--card-only", action="store_true", help="only rewrite docs/pretrained.md from --out's card "
                    "(recording --comparison in it when given)")
    ap.add_argument("--out", type=Path, default=pretrained_path(), help="default: the shipped asset path")
    ap.add_argument("--command", action="append", default=[], help="a training command to record (repeatable)")
    ap.add_argument("--n", type=int, default=N, help="images per metric")
    ap.add_argument("--comparison", default="", help="why this generator ships (measured against the one it replaces)")
    ap.add_argument("--latents", choices=SCHEMES, default=None, help="latent scheme to record (default: the run's)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.directions_only:
            write_directions(args.out)
            meta = write_card(args.out, None)
            print(json.dumps(meta["card"]["directions"], indent=1))
            return 0
        if args.card_only:
            meta = write_card(args.out, args.comparison or None)
            print(json.dumps(meta["card"].get("comparison", ""), indent=1))
            return 0
        if args.run is None:
            ap.error("give the run dir (or --directions-only or --card-only)")
        info = build(args.run, args.out, args.command, args.n, args.latents, args.comparison)
    except GanimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
