"""128 px on a CPU: training speed and work per image of the 128 px candidates, beside `modern` at 64 px.

    python benchmarks/speed_128.py --data data/faces-128.npz --seconds 20

For each network: convolution FLOPs per image of a training step (G forward for the D step, D forward on real
and fake, the backward passes ~2x the forwards: counted by torch's FlopCounterMode on one real step), then
training img/s of `Trainer.train_step` in each precision/layout, timed in alternating rounds in one process
(median of rounds), so load from other processes hits all alike. Then a torch.profiler table of modern-128's
step (bf16/channels_last on CPUs with AMX, else fp32/channels_last) and the wall time of `--precision auto`'s
choice for modern-128 with an empty cache. The 128 px faces: `python scripts/build_faces_dataset.py --size 128
--out data/faces-128.npz`. Networks:

- modern (64 px): the 64 px recipe, for scale;
- modern-128: the 64 px network grown by one 2x block each side (models/grown.py), 16 channels at 64 x 64;
- dcgan-128: the dcgan network at 128 px with modern's width 32, which doubles channels per stage (512 at 4x4);
- fastgan-128: FastGAN at 128 px with width 32 (the preset called modern-128 until 2026-12-05).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ganime.config import TrainConfig, override, preset
from ganime.data.dataset import load_dataset
from ganime.device import configure_backends, cpu_model, set_threads
from ganime.training.autotune import resolve_runtime
from ganime.training.precision import Runtime
from ganime.training.trainer import Trainer

NETWORKS = {
    "modern (64 px)": lambda: preset("modern"),
    "modern-128": lambda: preset("modern-128"),
    "dcgan-128": lambda: override(preset("modern"), **{"model.resolution": 128}),
    "fastgan-128": lambda: preset("fastgan-128"),
}


def step_gflop(trainer: Trainer, real: torch.Tensor) -> float:
    """Convolution-and-matmul GFLOP per image of one full training step (forward and backward, G and D)."""
    counter = FlopCounterMode(display=False)
    with counter:
        trainer.train_step(real, None)
    return counter.get_total_flops() / 1e9 / len(real)


def time_rounds(trainers: dict[str, Trainer], batches: dict[str, torch.Tensor], seconds: float) -> dict[str, float]:
    """Median img/s per trainer over alternating rounds of a few steps each."""
    rates: dict[str, list[float]] = {k: [] for k in trainers}
    for k, tr in trainers.items():  # warm-up: kernel choice, allocations
        tr.train_step(batches[k], None)
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or min(len(v) for v in rates.values()) < 2:
        for k, tr in trainers.items():
            steps = 1 if "fastgan" in k else 3
            t0 = time.perf_counter()
            for _ in range(steps):
                stats = tr.train_step(batches[k], None)
            stats["loss_g"].item()
            rates[k].append(steps * len(batches[k]) / (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in rates.items()}


def profile_table(trainer: Trainer, real: torch.Tensor, rows: int = 10) -> str:
    """Top operators of a few steps by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    trainer.train_step(real, None)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(4):
            trainer.train_step(real, None)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/faces-128.npz", help="images (rendered at 128 px)")
    ap.add_argument("--seconds", type=float, default=20.0, help="timing rounds per runtime")
    ap.add_argument("--threads", type=int, default=0, help="0 = physical cores")
    ap.add_argument("--only", default="", help="comma list of networks (default: all)")
    ap.add_argument("--no-auto", action="store_true", help="skip timing modern-128's --precision auto choice")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    device = torch.device("cpu")
    configure_backends(device)
    threads = set_threads(args.threads)
    names = [n for n in NETWORKS if not args.only or n in args.only.split(",")]
    amx = torch.backends.cpu.get_cpu_capability() == "AVX512" and "amx" in Path("/proc/cpuinfo").read_text()
    runtimes = [Runtime("fp32", True), Runtime("fp32", False), Runtime("bf16", True), Runtime("bf16", False)]
    if not amx:
        runtimes = runtimes[:2]  # bf16 is emulated without AMX/AVX512-BF16: 6-10x slower, not worth timing
    print(f"{cpu_model()} ({torch.backends.cpu.get_cpu_capability()}{', AMX' if amx else ''}), torch "
          f"{torch.__version__}, {threads} threads\n")
    print("| network | resolution | G / D parameters | GFLOP per image (step) | " + " | ".join(r.label() for r in runtimes) + " |")
    print("|---|---|---|---|" + "---|" * len(runtimes))
    datasets: dict[int, object] = {}
    for name in names:
        cfg: TrainConfig = NETWORKS[name]()
        res = cfg.model.resolution
        if res not in datasets:
            datasets[res] = load_dataset(args.data, res)
        ds = datasets[res]
        trainers, batches = {}, {}
        for rt in runtimes:
            tr = Trainer(cfg, ds, device, Path(tempfile.mkdtemp()), rt)
            trainers[rt.label()] = tr
            batches[rt.label()] = tr.loader.batch(0, 0)[0]
        first = next(iter(trainers.values()))
        gflop = step_gflop(first, batches[runtimes[0].label()])
        rates = time_rounds(trainers, batches, args.seconds)
        params = f"{sum(p.numel() for p in first.G.parameters()) / 1e6:.2f} M / {sum(p.numel() for p in first.D.parameters()) / 1e6:.2f} M"
        cells = " | ".join(f"{rates[r.label()]:.1f}" for r in runtimes)
        print(f"| {name} | {res} | {params} | {gflop:.2f} | {cells} |", flush=True)
        if name == "modern-128":
            best = max(rates, key=rates.__getitem__)
            prof = profile_table(trainers[best], batches[best])
        del trainers
    if "modern-128" in names:
        print(f"\nmodern-128 profile ({best}, 4 steps at batch {preset('modern-128').batch_size}):\n\n{prof}")
    if not args.no_auto:
        with tempfile.TemporaryDirectory() as cache:
            os.environ["GANIME_CACHE"] = cache
            cfg = dataclasses.replace(preset("modern-128"), data=dataclasses.replace(preset("modern-128").data, path=args.data))
            t0 = time.perf_counter()
            chosen, info = resolve_runtime(cfg, datasets.get(128) or load_dataset(args.data, 128), device, threads)
            secs = time.perf_counter() - t0
        print(f"\n--precision auto for modern-128: {chosen.label()} in {secs:.1f} s (img/s: {info.get('timings_img_per_s')})")


if __name__ == "__main__":
    main()
