"""The run's precision and memory layout (training/precision.py's Runtime): as configured, as recorded by the run
being resumed, from the per-machine cache, or timed now with throw-away Trainers (`auto`); and RUN/runtime.json,
which records the choice and every switch of it (each ends bit-exactness from its step).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import torch
from torch import Tensor

from ganime import checkpoint as ckpt_io
from ganime.config import TrainConfig
from ganime.data.dataset import ImageDataset
from ganime.device import cpu_model
from ganime.training import precision
from ganime.training.distributed import DistEnv
from ganime.training.precision import Runtime
from ganime.training.trainer import Trainer

log = logging.getLogger(__name__)

RUNTIME_FILE = "runtime.json"


def choose_runtime(
    cfg: TrainConfig, dataset: ImageDataset, dist_env: DistEnv, threads: int, run_dir: Path, saved_state: dict | None
) -> tuple[Runtime, dict]:
    """The runtime of this session (rank 0 resolves it for every rank) and its description; rank 0 writes it to
    runtime.json, with this resume's switch of precision/layout if it makes one. `saved_state`: the state.json
    of the checkpoint being resumed, else None."""
    recorded = None if saved_state is None else saved_state.get("runtime") or read_runtime_file(run_dir)
    device = dist_env.device
    runtime, info = dist_env.runtime(lambda: resolve_runtime(cfg, dataset, device, threads, recorded))
    if dist_env.is_main:
        if saved_state is not None:
            changes = _resume_runtime(run_dir, recorded, runtime, saved_state["step"], device, cfg.precision == "auto")
            info = {**info, "changes": changes}
        write_runtime_file(run_dir, runtime, info)
    return runtime, info


def resolve_runtime(
    cfg: TrainConfig,
    dataset: ImageDataset,
    device: torch.device,
    threads: int,
    recorded: dict | None = None,
) -> tuple[Runtime, dict]:
    """The run's precision and layout: as configured, as recorded by the run being resumed, from the
    per-machine cache, or timed now (`auto`). Returns it with a description for runtime.json."""
    cands = precision.candidates(cfg.precision, cfg.channels_last, device, cfg.compile)
    auto = cfg.precision == "auto" or cfg.channels_last == "auto"
    if recorded and auto:
        # a resumed run keeps the choice it started with: re-timing could pick another and break exactness
        rec = Runtime.from_dict(recorded)
        chosen = Runtime(
            rec.precision if cfg.precision == "auto" else cfg.precision,
            rec.channels_last if cfg.channels_last == "auto" else cfg.channels_last == "on",
            cfg.compile,
        )
        return chosen, {"source": "recorded"}
    if len(cands) == 1:
        return cands[0], {"source": "config"}
    key = json.dumps(
        {
            "machine": precision.machine_id(device, threads),
            "model": dataclasses.asdict(cfg.model),
            "batch_size": cfg.batch_size,
            "loss": dataclasses.asdict(cfg.loss),
            "candidates": [c.label() for c in cands],
        },
        sort_keys=True,
    )
    hit = precision.cached_choice(key)
    if hit is not None:
        chosen = dataclasses.replace(Runtime.from_dict(hit["runtime"]), compile=cfg.compile)
        log.info("runtime %s (cached choice for this machine, %s)", chosen.label(), precision.cache_file())
        return chosen, {"source": "cache", "timings_img_per_s": hit.get("timings", {})}
    t0 = time.perf_counter()
    all_cands = cands
    cands, conv_ms = precision.drop_slow_precisions(cands, lambda p: precision.conv_seconds(p, device))
    if len(cands) < len(all_cands):
        log.info(
            "runtime: not timing %s (a convolution takes %s ms)",
            ", ".join(c.label() for c in all_cands if c not in cands),
            ", ".join(f"{p} {v}" for p, v in conv_ms.items()),
        )
    chosen, timings = precision.pick_fastest(
        cands,
        _StepTimer(cfg, dataset, device),
        cfg.batch_size,
    )
    secs = time.perf_counter() - t0
    log.info(
        "runtime %s: fastest of %s in %.0f s (img/s: %s)",
        chosen.label(), ", ".join(c.label() for c in cands), secs, ", ".join(f"{k} {v}" for k, v in timings.items()),
    )
    entry = {"runtime": chosen.to_dict(), "timings": timings, "conv_ms": conv_ms, "seconds": round(secs, 1)}
    precision.store_choice(key, entry)
    return chosen, {
        "source": "timed",
        "timings_img_per_s": timings,
        "conv_ms": conv_ms,
        "timing_seconds": round(secs, 1),
    }


def _resume_runtime(
    run_dir: Path, recorded: dict | None, runtime: Runtime, step: int, device: torch.device, auto: bool
) -> list[dict]:
    """runtime.json's list of switches of precision/layout (each ends bit-exactness from its step), with this
    resume's if it switches. When it keeps a precision much slower here than another (picked by `auto` on
    another machine, or a reduced precision emulated here), says so in one line."""
    changes = [c for c in (read_runtime_file(run_dir) or {}).get("changes", []) if c.get("step", 0) < step]
    if not recorded:
        return changes
    rec = Runtime.from_dict(recorded)
    if (rec.precision, rec.channels_last) != (runtime.precision, runtime.channels_last):
        log.warning(
            "running %s instead of the run's %s from step %d on: from there the run is no longer bit-exact with an "
            "unbroken one (recorded in %s)", runtime.label(), rec.label(), step, run_dir / RUNTIME_FILE,
        )
        return [*changes, {"step": step, "from": rec.label(), "to": runtime.label()}]
    if not auto and runtime.precision == "fp32":  # asked for by name, and never emulated
        return changes
    others = [c.precision for c in precision.candidates("auto", "off", device)]
    advice = precision.faster_alternative(runtime.precision, others, lambda p: precision.conv_seconds(p, device))
    if advice is not None:
        fastest, ms = advice
        log.warning(
            "this run keeps %s (recorded when it started) to stay bit-exact, but here a %s convolution takes %.3g ms "
            "against %.3g ms in %s (%.0fx slower); to train faster resume with --precision %s, knowing the run is "
            "then no longer bit-exact from step %d on (runtime.json records where)",
            runtime.precision, runtime.precision, ms[runtime.precision], ms[fastest], fastest,
            ms[runtime.precision] / max(ms[fastest], 1e-9), fastest, step,
        )
    return changes


class _StepTimer:
    """Wall time per image of train steps, for `precision.pick_fastest`: one throw-away trainer per candidate,
    built once at the run's batch size (a smaller probe batch is a slice of its real batch), with one untimed
    warm-up step per (candidate, batch) for allocations and oneDNN/cuDNN kernel choice."""

    def __init__(self, cfg: TrainConfig, dataset: ImageDataset, device: torch.device) -> None:
        self.cfg, self.dataset, self.device = cfg, dataset, device
        self.trainers: dict[Runtime, Trainer] = {}
        self.warm: set[tuple[Runtime, int]] = set()

    def __call__(self, runtime: Runtime, batch: int, steps: int) -> float:
        trainer = self.trainers.get(runtime)
        if trainer is None:
            trainer = Trainer(self.cfg, self.dataset, self.device, Path("."), dataclasses.replace(runtime, compile=False))
            self.trainers[runtime] = trainer
        real, labels = trainer.loader.batch(0, 0)
        real, labels = real[:batch], (labels[:batch] if labels is not None else None)
        if (runtime, batch) not in self.warm:
            _sync(trainer.train_step(real, labels))
            self.warm.add((runtime, batch))
        trainer.step = 1  # a plain step, as all but one in loss.r1_every are: at step 0 D would pay its lazy R1
        t0 = time.perf_counter()
        for _ in range(steps):
            stats = trainer.train_step(real, labels)
        _sync(stats)
        return (time.perf_counter() - t0) / (steps * len(real))


def _sync(stats: dict[str, Tensor]) -> None:
    stats["loss_g"].item()  # waits for queued device work


def write_runtime_file(run_dir: Path, runtime: Runtime, info: dict) -> None:
    ckpt_io.atomic_write_json(
        run_dir / RUNTIME_FILE,
        {
            **runtime.to_dict(),
            **info,
            "threads": torch.get_num_threads(),
            "cpu": cpu_model(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__,
        },
    )


def read_runtime_file(run_dir: Path) -> dict | None:
    try:
        d = json.loads((run_dir / RUNTIME_FILE).read_text())
        Runtime.from_dict(d)
        return d
    except (OSError, ValueError, KeyError, TypeError):
        return None
