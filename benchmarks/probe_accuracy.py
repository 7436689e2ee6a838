"""How well the growth planner's speed probe predicts what training runs at, per stage of a run's config.

    python benchmarks/probe_accuracy.py RUN [--steps 48] [--threads 2]

For each stage of RUN (its config.json and runtime.json: the same network, precision and layout), img/s of:
- the old probe: a warm-up step and three timed ones with the trainer's step standing at 0, so that D paid its
  lazy R1 penalty on every one (what `growth.measure_speeds` did before the eighth session);
- `growth.measure_speeds` as it is;
- `--steps` consecutive steps with the step counter advancing as in training (one regularised step in
  `loss.r1_every`): the truth the plan should match.
Run it alone on the machine: it times steps. Nothing is written to RUN.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from ganime.config import TrainConfig
from ganime.data.dataset import load_dataset
from ganime.training import growth
from ganime.training.precision import Runtime
from ganime.training.trainer import Trainer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--steps", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not (args.run / "config.json").is_file():
        print(f"error: no config.json in {args.run}: give a run directory", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    cfg = TrainConfig.from_dict(json.loads((args.run / "config.json").read_text()))
    runtime_file = args.run / "runtime.json"
    runtime = Runtime.from_dict(json.loads(runtime_file.read_text())) if runtime_file.is_file() else Runtime()
    dataset = load_dataset(cfg.data.path, cfg.model.resolution, cfg.model.channels, cache_dir=cfg.data.cache_dir)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, dataset, torch.device("cpu"), Path(tmp), runtime)
        real, labels = trainer.loader.batch(0, 0)
        probed = growth.measure_speeds(trainer)
        depths = range(cfg.model.levels if cfg.growth.start else 0, -1, -1)
        print(f"{args.run}: {runtime.label()}, {args.threads} threads, batch {real.shape[0]}\n")
        print("| stage | old probe (img/s) | probe | consecutive steps | old / true | probe / true |")
        print("|---|---|---|---|---|---|")
        for depth, new in zip(depths, probed):
            trainer.force_depth(depth)
            trainer.step = 0
            trainer.train_step(real, labels)
            t0 = time.perf_counter()
            for _ in range(3):
                trainer.train_step(real, labels)
            old = 3 * real.shape[0] / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            for i in range(1, args.steps + 1):
                trainer.step = i
                trainer.train_step(real, labels)
            true = args.steps * real.shape[0] / (time.perf_counter() - t0)
            size = cfg.model.resolution >> depth
            print(f"| {size} px | {old:.0f} | {new:.0f} | {true:.0f} | {old / true:.2f} | {new / true:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
