"""Data-parallel scaling on this CPU: `ganime train` in 1 process vs `torchrun --nproc-per-node 2` (gloo).

    python benchmarks/scaling.py --steps 60 --rounds 2

Runs, in alternating rounds (so load from other jobs on a shared machine hits all alike):

1. `python -m ganime train --threads T` with T = 1 and T = --threads (default: physical cores);
2. `torchrun --standalone --nproc-per-node 2 -m ganime train` (one thread per rank, gloo on loopback).

Same preset, data, global batch and seed. Each figure is ganime's own `img_per_s` from metrics.csv (global-batch
images per second of training steps only, without grids and checkpoints, timed on rank 0), the median over the
logged 10-step windows after the first (warm-up), then the median over rounds. Scaling efficiency =
img/s with 2 processes / (2 x img/s of 1 process with 1 thread). The last lines are machine-readable.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ganime.device import cpu_model, physical_cores


def run(label: str, cmd: list[str], env: dict[str, str], out: Path, timeout: float) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        sys.exit(f"{label} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    ips = [float(row["img_per_s"]) for row in rows[1:]] or [float(rows[0]["img_per_s"])]
    med = statistics.median(ips)
    print(f"  {label:<34} {med:8.1f} img/s  ({len(ips)} windows, {time.perf_counter() - t:.0f} s incl. start-up)",
          flush=True)
    return med


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tutorial-small")
    p.add_argument("--batch-size", type=int, default=0, help="global batch (default: the preset's)")
    p.add_argument("--steps", type=int, default=60, help="training steps per run")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=physical_cores(), help="threads of the multi-thread 1-process run")
    p.add_argument("--sync-bn", action="store_true", help="2 processes with --sync-bn")
    p.add_argument("--timeout", type=float, default=600, help="seconds per run before giving up")
    args = p.parse_args()

    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    print(f"CPU: {cpu_model()}, {physical_cores()} physical cores, {os.cpu_count()} logical; torch {torch.__version__}")
    print(f"preset {args.preset}, {args.steps} steps, batch {args.batch_size or 'preset'}, fp32, contiguous, "
          f"{args.rounds} rounds; start-up load average {os.getloadavg()[0]:.1f}")
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        common = ["train", "--preset", args.preset, "--precision", "fp32",
                  "--channels-last", "off", "--no-progress", "--cache-dir", str(tmp / "cache")]
        if args.batch_size:
            common += ["--batch-size", str(args.batch_size)]
        subprocess.run([sys.executable, "-m", "ganime", *common, "--steps", "1", "--out", str(tmp / "warm")],
                       env=env, capture_output=True, timeout=args.timeout, check=True)  # decode the cache once
        common += ["--steps", str(args.steps)]
        configs = {
            "1 process, 1 thread": [sys.executable, "-m", "ganime", *common, "--threads", "1"],
            f"1 process, {args.threads} threads": [sys.executable, "-m", "ganime", *common, "--threads", str(args.threads)],
            "2 processes (gloo), 1 thread each": [
                sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                "-m", "ganime", *common, "--threads", "1", *(["--sync-bn"] if args.sync_bn else []),
            ],
        }
        for rnd in range(args.rounds):
            print(f"round {rnd + 1}:")
            for i, (label, cmd) in enumerate(configs.items()):
                out = tmp / f"r{rnd}-{i}"
                results.setdefault(label, []).append(run(label, [*cmd, "--out", str(out)], env, out, args.timeout))
    med = {k: statistics.median(v) for k, v in results.items()}
    one, multi, two = med["1 process, 1 thread"], med[f"1 process, {args.threads} threads"], med[
        "2 processes (gloo), 1 thread each"]
    print("median over rounds:")
    for k, v in med.items():
        print(f"  {k:<34} {v:8.1f} img/s")
    print(f"speedup_2proc_vs_1thread: {two / one:.2f}")
    print(f"speedup_2proc_vs_{args.threads}threads: {two / multi:.2f}")
    print(f"scaling_efficiency: {two / (2 * one):.2f}")


if __name__ == "__main__":
    main()
