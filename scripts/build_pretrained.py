"""Write the shipped pretrained generator src/ganime/assets/modern-emoji-64.safetensors (+ .json) from a run.

    python -m ganime train --preset modern --minutes 30 --out /tmp/pretrained-run --no-progress
    python scripts/build_pretrained.py /tmp/pretrained-run \
        --command "python -m ganime train --preset modern --minutes 30 --out /tmp/pretrained-run --no-progress"

Takes the run's EMA generator (as `ganime generate` does), stores it in fp16 (half the bytes; images differ from
the fp32 weights by at most a few uint8 levels), records where it came from in the JSON sidecar (training
commands, steps, kimg, training seconds, machine) and the SWD of the fp16 file against the shipped data set,
measured with `ganime.evaluate` on all 1,446 real images. Refuses to write more than MAX_BYTES.

The sidecar's "model" records the latent scheme (how seeds become latents, ganime.latent): a run trained since
portable latents records "splitmix64-box-muller", so the shipped seeds show the same faces in torch, ONNX and
the browser page; `--latents` overrides it (e.g. to ship an older run's weights with portable seeds: its seeds
then show other faces than in that run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

import torch

from ganime.checkpoint import atomic_write_json, read_state, resolve_checkpoint
from ganime.errors import GanimeError
from ganime.evaluate import evaluate
from ganime.generate import load_generator, pretrained_path, save_generator
from ganime.latent import SCHEMES

MAX_BYTES = 10_000_000  # ships inside the wheel
SWD_N = 1446  # every image of the shipped set


def build(run: Path, out: Path, commands: list[str], n: int = SWD_N, latents: str | None = None) -> dict:
    ckpt = resolve_checkpoint(run)
    state = read_state(ckpt)
    runtime = json.loads((run / "runtime.json").read_text()) if (run / "runtime.json").is_file() else {}
    gen = load_generator(ckpt)  # G_ema with its re-estimated BatchNorm statistics
    if latents is not None:
        gen = dataclasses.replace(gen, model=dataclasses.replace(gen.model, latents=latents))
    if state["config"]["data"]["path"]:
        raise GanimeError(f"{run} was not trained on the shipped emoji set (data.path = {state['config']['data']['path']!r})")
    gen.meta = {
        **gen.meta,
        "training": {
            "commands": commands,
            "preset": state["config"]["preset"],
            "steps": state["step"],
            "kimg": round(state["images_seen"] / 1000, 2),
            "train_seconds": round(state["seconds"], 1),
            "cpu": runtime.get("cpu", ""),
            "threads": runtime.get("threads", 0),
            "runtime": state.get("runtime", {}),
            "torch": runtime.get("torch", torch.__version__),
        },
        "dataset": "ganime/assets/noto-emoji-64.npz (Noto Color Emoji, SIL OFL 1.1)",
        "licence": "weights: same licence as ganime; trained on images rendered from Noto Color Emoji (SIL OFL 1.1)",
    }
    path = save_generator(gen, out, dtype=torch.float16)
    size = path.stat().st_size + path.with_suffix(".json").stat().st_size
    if size > MAX_BYTES:
        path.unlink()
        raise GanimeError(f"{path} would be {size / 1e6:.1f} MB; the shipped generator must stay under {MAX_BYTES / 1e6:.0f} MB")
    # quality of what ships: the fp16 file itself against the real images
    report = evaluate(path, data=None, metrics="swd", n=n, seed=0, write=False)
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["quality"] = {
        "swd": round(float(report.metrics["swd"]), 3),
        **{k: round(float(v), 3) for k, v in report.metrics.items() if k.startswith("swd_")},
        "n_real": report.n_real,
        "n_fake": report.n_fake,
        "seed": report.seed,
        "how": "ganime.evaluate(file, metrics='swd', n=1446, seed=0) against the shipped set (SWD x 1e3)",
    }
    atomic_write_json(path.with_suffix(".json"), meta)
    return {"path": str(path), "bytes": path.stat().st_size, "latents": meta["model"]["latents"], **meta["training"],
            **meta["quality"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="run dir trained with --preset modern on the shipped set")
    ap.add_argument("--out", type=Path, default=pretrained_path(), help="default: the shipped asset path")
    ap.add_argument("--command", action="append", default=[], help="a training command to record (repeatable)")
    ap.add_argument("--n", type=int, default=SWD_N, help="images for the SWD figure")
    ap.add_argument("--latents", choices=SCHEMES, default=None, help="latent scheme to record (default: the run's)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        info = build(args.run, args.out, args.command, args.n, args.latents)
    except GanimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
